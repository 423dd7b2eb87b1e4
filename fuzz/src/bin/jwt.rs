//! Fuzz target `jwt`: see [`mft_fuzz::jwt`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::jwt(data));
}
