//! Fuzz target `config`: see [`mft_fuzz::config`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::config(data));
}
