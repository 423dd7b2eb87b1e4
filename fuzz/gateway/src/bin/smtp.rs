//! Fuzz target `smtp`: see [`mft_fuzz_gateway::smtp`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_gateway::smtp(data));
}
