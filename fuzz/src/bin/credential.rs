//! Fuzz target `credential`: see [`mft_fuzz::credential`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::credential(data));
}
