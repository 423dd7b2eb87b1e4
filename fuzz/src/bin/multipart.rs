//! Fuzz target `multipart`: see [`mft_fuzz::multipart`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::multipart(data));
}
