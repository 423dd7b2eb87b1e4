//! Fuzz target `sftp`: see [`mft_fuzz::sftp`].
fn main() {
    afl::fuzz!(|data: &[u8]| mft_fuzz::sftp(data));
}
