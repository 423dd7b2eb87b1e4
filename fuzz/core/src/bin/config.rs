//! Fuzz target `config`: see [`mft_fuzz_core::config`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_core::config(data));
}
