//! Mail attachments arrive byte-exact: the sender's bytes with only the
//! transfer encoding undone, never converted from their charset (an
//! ISO-8859-1 file sent 8bit and quoted-printable, a UTF-8 CSV cut inside a
//! character sent base64), over SMTP (swaks) and the IMAP poller (Dovecot).

use super::imap::{file_sha256, imap_table, mail_stack, wait_deliveries};
use mft_e2e::dovecot;
use mft_e2e::smtp::*;
use mft_e2e::*;
use sha2::Digest;
use std::time::Duration;

/// A message whose three attachments a charset conversion would change,
/// and each attachment's name and the SHA-256 of the bytes sent.
fn message(subject: &str, from: &str, to: &str) -> (Vec<u8>, Vec<(&'static str, String)>) {
    use base64::Engine as _;
    let latin1: &[u8] = b"Gr\xfc\xdfe aus K\xf6ln\r\nPreis: 5 \xa4\r\n";
    let latin1_csv: &[u8] = b"id;name;city\r\n1;M\xfcller;K\xf6ln\r\n2;Stra\xdfe=3;\xa9\r\n";
    let latin1_csv_qp = "id;name;city\r\n1;M=FCller;K=F6ln\r\n2;Stra=DFe=3D3;=A9\r\n";
    // Cut after the first byte of the "ü" in "Grüße".
    let cut: &[u8] = &"id;name\r\n1;Grüße\r\n".as_bytes()[..14];
    assert_eq!(cut.last(), Some(&0xc3));
    let cut_b64 = base64::engine::general_purpose::STANDARD.encode(cut);

    let mut raw = format!(
        "From: <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{id}@legacy.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Body of {subject}\r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=iso-8859-1\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         Content-Disposition: attachment; filename=\"latin1.txt\"\r\n\
         \r\n",
        id = subject.replace(' ', "-"),
    )
    .into_bytes();
    // Each part ends with an empty line: the line break before the
    // boundary belongs to the boundary, so the content ends with CRLF.
    raw.extend_from_slice(latin1);
    raw.extend_from_slice(
        b"\r\n--b1\r\n\
          Content-Type: text/csv; charset=iso-8859-1\r\n\
          Content-Transfer-Encoding: quoted-printable\r\n\
          Content-Disposition: attachment; filename=\"latin1-qp.csv\"\r\n\
          \r\n",
    );
    raw.extend_from_slice(latin1_csv_qp.as_bytes());
    raw.extend_from_slice(
        b"\r\n--b1\r\n\
          Content-Type: text/csv; charset=utf-8\r\n\
          Content-Transfer-Encoding: base64\r\n\
          Content-Disposition: attachment; filename=\"cut.csv\"\r\n\
          \r\n",
    );
    raw.extend_from_slice(cut_b64.as_bytes());
    raw.extend_from_slice(b"\r\n--b1--\r\n");
    let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    (
        raw,
        vec![
            ("latin1.txt", sha(latin1)),
            ("latin1-qp.csv", sha(latin1_csv)),
            ("cut.csv", sha(cut)),
        ],
    )
}

#[tokio::test]
async fn smtp_text_attachments_arrive_with_the_senders_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let smtp = start_smtp_gateway(dir.path(), &certs, &backend.url, "").await;
    let (raw, want) = message(
        "charsets over smtp",
        "alice@partner.example",
        "bob@ourcorp.example",
    );
    let data = dir.path().join("message.eml");
    std::fs::write(&data, &raw).unwrap();
    let port = smtp.smtp.port().to_string();
    let (ok, transcript) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "svc",
        "--auth-password",
        &smtp.gw.key,
        "--from",
        "alice@partner.example",
        "--to",
        "bob@ourcorp.example",
        "--data",
        &format!("@{}", data.display()),
    ]);
    assert!(ok, "{transcript}");
    let d = wait_delivery(
        &smtp.gw,
        &certs,
        "charsets over smtp",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        d["message"].as_str().unwrap().contains("Body of charsets"),
        "{d}"
    );
    let files = d["files"].as_array().unwrap();
    let mut got = Vec::new();
    for id in files {
        let f = file(&smtp.gw, &certs, id.as_str().unwrap()).await;
        got.push((
            f["name"].as_str().unwrap().to_string(),
            f["sha256"].as_str().unwrap().to_string(),
        ));
    }
    let want: Vec<(String, String)> = want.into_iter().map(|(n, s)| (n.into(), s)).collect();
    assert_eq!(got, want, "{d}");
}

#[tokio::test]
async fn imap_text_attachments_arrive_with_the_senders_bytes() {
    let (raw, want) = message(
        "charsets over imap",
        "legacy@ourcorp.example",
        "bob@partner.example",
    );
    let s = mail_stack(
        "",
        dovecot::Options::default(),
        |d| d.save("INBOX", &raw),
        |d, pw, ca| imap_table(d, pw, ca, "legacy", "INBOX", "seen"),
    )
    .await;
    let got = wait_deliveries(&s, "one delivery", |d| d.len() == 1).await;
    let d = &got[0];
    assert_eq!(d["subject"], "charsets over imap");
    let files = d["files"].as_array().unwrap();
    assert_eq!(files.len(), want.len(), "{d}");
    for (id, (name, sha)) in files.iter().zip(&want) {
        assert_eq!(
            &file_sha256(&s, id.as_str().unwrap()).await,
            sha,
            "{name}: {d}"
        );
    }
}
