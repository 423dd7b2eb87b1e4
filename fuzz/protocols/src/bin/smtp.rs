//! Fuzz target `smtp`: see [`mft_fuzz_protocols::smtp`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_protocols::smtp(data));
}
