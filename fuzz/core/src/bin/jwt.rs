//! Fuzz target `jwt`: see [`mft_fuzz_core::jwt`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_core::jwt(data));
}
