//! Fuzz target `sftp`: see [`mft_fuzz::sftp`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::sftp(data));
}
