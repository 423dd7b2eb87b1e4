//! Fuzz target `smtp`: see [`mft_fuzz::smtp`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::smtp(data));
}
