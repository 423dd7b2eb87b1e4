//! Fuzz target `imap`: see [`mft_fuzz_protocols::imap`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_protocols::imap(data));
}
