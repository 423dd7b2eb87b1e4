//! Fuzz target `credential`: see [`mft_fuzz_core::credential`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_core::credential(data));
}
