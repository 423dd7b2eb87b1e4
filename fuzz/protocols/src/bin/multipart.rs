//! Fuzz target `multipart`: see [`mft_fuzz_protocols::multipart`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_protocols::multipart(data));
}
