//! Fuzz target `federation`: see [`mft_fuzz::federation`].
fn main() {
    afl::fuzz!(|data: &[u8]| mft_fuzz::federation(data));
}
