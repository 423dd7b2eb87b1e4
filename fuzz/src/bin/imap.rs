//! Fuzz target `imap`: see [`mft_fuzz::imap`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::imap(data));
}
