//! Fuzz target `sftp`: see [`mft_fuzz_protocols::sftp`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_protocols::sftp(data));
}
