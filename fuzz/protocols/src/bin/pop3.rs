//! Fuzz target `pop3`: see [`mft_fuzz_protocols::pop3`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_protocols::pop3(data));
}
