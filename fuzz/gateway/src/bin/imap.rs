//! Fuzz target `imap`: see [`mft_fuzz_gateway::imap`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_gateway::imap(data));
}
