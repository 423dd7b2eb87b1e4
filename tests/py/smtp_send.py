#!/usr/bin/env python3
"""Sends one message to the gateway's SMTP listener with Python's smtplib and
prints, as one JSON line, the reply of every step, so the Rust test asserts
codes without parsing smtplib's exceptions.

  smtp_send.py --host H --port P [--starttls|--ssl] [--cafile PEM]
               [--user U --password PW [--mech PLAIN|LOGIN]] [--raw-auth]
               [--from A] [--to B ...] [--size N]
               [--attach PATH [--attach-name NAME] [--attach-type T/S]
                [--attach-cte quoted-printable|base64]] [--raw FILE]

--raw-auth sends "AUTH PLAIN <initial response>" as a raw command (smtplib
itself refuses to send AUTH when the server does not advertise it, which is
exactly the case before STARTTLS). Steps after a refusal are not attempted.
"""
import argparse
import base64
import json
import smtplib
import ssl
import sys
from email.message import EmailMessage


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--ssl", action="store_true")
    p.add_argument("--cafile")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--mech", default="PLAIN")
    p.add_argument("--raw-auth", action="store_true")
    p.add_argument("--from", dest="sender", default="alice@partner.example")
    p.add_argument("--to", action="append", default=[])
    p.add_argument("--size", type=int)
    p.add_argument("--attach")
    p.add_argument("--attach-name")
    p.add_argument("--attach-type", default="application/octet-stream")
    p.add_argument("--attach-cte")
    p.add_argument("--raw")
    p.add_argument("--subject", default="Files from smtplib")
    a = p.parse_args()

    out = {}
    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = False
    try:
        if a.ssl:
            s = smtplib.SMTP_SSL(a.host, a.port, context=ctx, timeout=120)
        else:
            s = smtplib.SMTP(a.host, a.port, timeout=120)
    except smtplib.SMTPConnectError as e:
        # Refused in the greeting (banned or not an allowed network).
        out["connect"] = [e.smtp_code, e.smtp_error.decode()]
        print(json.dumps(out))
        return 0
    try:
        code, msg = s.ehlo("client.example")
        out["ehlo"] = [code, msg.decode()]
        if a.starttls:
            code, msg = s.starttls(context=ctx)
            out["starttls"] = [code, msg.decode()]
            code, msg = s.ehlo("client.example")
            out["ehlo_tls"] = [code, msg.decode()]
        if a.raw_auth:
            token = base64.b64encode(f"\0{a.user}\0{a.password}".encode()).decode()
            code, msg = s.docmd("AUTH", "PLAIN " + token)
            out["auth"] = [code, msg.decode()]
            if code != 235:
                return finish(s, out)
        elif a.user is not None:
            s.user, s.password = a.user, a.password
            mech = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[a.mech]
            try:
                code, msg = s.auth(a.mech, mech)
            except smtplib.SMTPAuthenticationError as e:
                code, msg = e.smtp_code, e.smtp_error
            out["auth"] = [code, msg.decode() if isinstance(msg, bytes) else msg]
            if code != 235:
                return finish(s, out)
        opts = [f"SIZE={a.size}"] if a.size else []
        code, msg = s.mail(a.sender, opts)
        out["mail"] = [code, msg.decode()]
        if code != 250:
            return finish(s, out)
        out["rcpt"] = []
        ok = 0
        for r in a.to:
            code, msg = s.rcpt(r)
            out["rcpt"].append([code, msg.decode()])
            ok += code == 250
        if ok == 0:
            return finish(s, out)
        if a.raw:
            with open(a.raw, "rb") as f:
                body = f.read()
        else:
            m = EmailMessage()
            m["From"] = a.sender
            m["To"] = ", ".join(a.to)
            m["Subject"] = a.subject
            m.set_content("Please find the file attached.\n")
            if a.attach:
                with open(a.attach, "rb") as f:
                    data = f.read()
                # A non-ASCII name is written as RFC 2231 filename*=utf-8''...
                maintype, subtype = a.attach_type.split("/", 1)
                extra = {"cte": a.attach_cte} if a.attach_cte else {}
                m.add_attachment(data, maintype=maintype, subtype=subtype,
                                 filename=a.attach_name or "file.bin", **extra)
            body = m.as_bytes()
        try:
            code, msg = s.data(body)
        except smtplib.SMTPDataError as e:
            code, msg = e.smtp_code, e.smtp_error
        out["data"] = [code, msg.decode() if isinstance(msg, bytes) else msg]
        return finish(s, out)
    except smtplib.SMTPServerDisconnected as e:
        out["disconnected"] = str(e)
        print(json.dumps(out))
        return 0


def finish(s, out):
    try:
        code, msg = s.quit()
        out["quit"] = [code, msg.decode()]
    except smtplib.SMTPServerDisconnected:
        out["quit"] = [0, "disconnected"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
