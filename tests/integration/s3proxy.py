#!/usr/bin/env python3
"""s3proxy.py LISTEN_PORT UPSTREAM_PORT ACCESS_KEY SECRET [SESSION_TOKEN]

A proxy in front of s3rver for tests/integration/s3.sh that does what s3rver does not:

- checks every request's AWS Signature Version 4, written here from AWS's specification ("Signature
  Version 4 signing process", "Create a canonical request": the URI as sent, the query decoded, re-encoded
  and sorted, the signed headers lowercased and trimmed, the x-amz-content-sha256 header as the payload
  hash, which must also be the body's SHA-256 unless UNSIGNED-PAYLOAD), independently of libcurl, and
  answers 403 SignatureDoesNotMatch (or InvalidAccessKeyId) like S3 when it does not match; with
  SESSION_TOKEN, the x-amz-security-token header must be that token and be signed;
- injects faults on demand: `PUT /__proxy/fail/N` makes every Nth request after it answer 503 SlowDown
  (N = 0: none), `PUT /__proxy/delay/MS` delays every answer; `GET /__proxy/stats` prints
  "checked N mismatched M failed F peak P ctrgets G putpeak U ctrpeak K parts R completes C": P is the
  most requests it has had in flight at once, G how many GETs of containers it has forwarded, U the most
  PUTs of containers (whole or parts) in flight at once, K the most containers with PUTs in flight at
  once, R how many parts of multipart uploads it has forwarded and C how many uploads were completed
  (`PUT /__proxy/reset` zeroes P, G, U, K, R and C); `PUT /__proxy/putdelay/MS` delays only the PUTs of
  containers.

Everything else is forwarded to 127.0.0.1:UPSTREAM_PORT as it came.
"""
import hashlib
import hmac
import http.client
import http.server
import sys
import threading
import time
import urllib.parse

LISTEN, UPSTREAM, ACCESS, SECRET = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
TOKEN = sys.argv[5] if len(sys.argv) > 5 else None
state = {"fail_every": 0, "count": 0, "delay": 0.0, "checked": 0, "mismatched": 0, "failed": 0,
         "inflight": 0, "peak": 0, "ctrgets": 0, "putdelay": 0.0, "puts": 0, "putpeak": 0,
         "putkeys": {}, "ctrpeak": 0, "parts": 0, "completes": 0}
lock = threading.Lock()
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def aws_encode(s):
    return "".join(c if c in UNRESERVED else "".join("%%%02X" % b for b in c.encode()) for c in s)


def canonical_query(raw):
    pairs = []
    for part in raw.split("&") if raw else []:
        k, _, v = part.partition("=")
        pairs.append((aws_encode(urllib.parse.unquote(k)), aws_encode(urllib.parse.unquote(v))))
    return "&".join("%s=%s" % kv for kv in sorted(pairs))


def hm(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def check_signature(method, target, headers, body):
    """None when the request is signed right, else (code, message)."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return ("AccessDenied", "not signed with AWS4-HMAC-SHA256")
    fields = dict(f.strip().split("=", 1) for f in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    key, date, region, service, term = fields["Credential"].split("/")
    if key != ACCESS:
        return ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    signed = fields["SignedHeaders"].split(";")
    for need in ("host", "x-amz-date", "x-amz-content-sha256"):
        if need not in signed:
            return ("AccessDenied", "%s is not signed" % need)
    if TOKEN is not None and (headers.get("x-amz-security-token") != TOKEN or "x-amz-security-token" not in signed):
        return ("InvalidToken", "The provided token is malformed or otherwise invalid.")
    payload = headers["x-amz-content-sha256"]
    if payload != "UNSIGNED-PAYLOAD" and payload != hashlib.sha256(body).hexdigest():
        return ("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
    path, _, query = target.partition("?")
    canon_headers = "".join("%s:%s\n" % (h, " ".join(headers.get(h, "").split())) for h in signed)
    creq = "\n".join([method, path, canonical_query(query), canon_headers, ";".join(signed), payload])
    scope = "/".join([date, region, service, term])
    sts = "\n".join(["AWS4-HMAC-SHA256", headers["x-amz-date"], scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = hm(hm(hm(hm(("AWS4" + SECRET).encode(), date), region), service), term)
    if hmac.new(k, sts.encode(), hashlib.sha256).hexdigest() != fields["Signature"]:
        return ("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=(), length=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message):
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>'
               % (code, message)).encode()
        self.answer(status, xml, [("Content-Type", "application/xml")])

    def control(self):
        parts = self.path.split("/")
        if self.command == "GET" and parts[2] == "stats":
            with lock:
                text = ("checked %(checked)d mismatched %(mismatched)d failed %(failed)d peak %(peak)d ctrgets %(ctrgets)d"
                        " putpeak %(putpeak)d ctrpeak %(ctrpeak)d parts %(parts)d completes %(completes)d\n"
                        % state)
            return self.answer(200, text.encode())
        with lock:
            if parts[2] == "fail":
                state["fail_every"], state["count"] = int(parts[3]), 0
            elif parts[2] == "reset":
                for k in ("peak", "ctrgets", "putpeak", "ctrpeak", "parts", "completes"):
                    state[k] = 0
            elif parts[2] == "putdelay":
                state["putdelay"] = int(parts[3]) / 1000.0
            elif parts[2] == "delay":
                state["delay"] = int(parts[3]) / 1000.0
        self.answer(200, b"ok\n")

    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if self.path.startswith("/__proxy/"):
            return self.control()
        with lock:
            state["inflight"] += 1
            state["peak"] = max(state["peak"], state["inflight"])
            if self.command == "GET" and "/containers/" in self.path:
                state["ctrgets"] += 1
            ctrput = self.command == "PUT" and "/containers/" in self.path
            key = self.path.split("?")[0]
            if ctrput:
                state["puts"] += 1
                state["putpeak"] = max(state["putpeak"], state["puts"])
                state["putkeys"][key] = state["putkeys"].get(key, 0) + 1
                state["ctrpeak"] = max(state["ctrpeak"], len(state["putkeys"]))
            if self.command == "PUT" and "partNumber=" in self.path:
                state["parts"] += 1
            if self.command == "POST" and "uploadId=" in self.path:
                state["completes"] += 1
            putdelay = state["putdelay"] if ctrput else 0
        try:
            if putdelay:
                time.sleep(putdelay)
            self.forward(body)
        finally:
            with lock:
                state["inflight"] -= 1
                if ctrput:
                    state["puts"] -= 1
                    state["putkeys"][key] -= 1
                    if not state["putkeys"][key]:
                        del state["putkeys"][key]

    def forward(self, body):
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            state["checked"] += 1
            state["count"] += 1
            fail = state["fail_every"] and state["count"] % state["fail_every"] == 0
            delay = state["delay"]
        if delay:
            time.sleep(delay)
        bad = check_signature(self.command, self.path, headers, body)
        if bad:
            sys.stderr.write("s3proxy: %s %s: %s\n" % (self.command, self.path, bad[0]))
            with lock:
                state["mismatched"] += 1
            return self.error(403, *bad)
        if fail:
            with lock:
                state["failed"] += 1
            return self.error(503, "SlowDown", "Please reduce your request rate.")
        up = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
        up.request(self.command, self.path, body=body, headers=fwd)
        r = up.getresponse()
        data = r.read()
        keep = [(k, v) for k, v in r.getheaders() if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        # A HEAD's Content-Length is the object's, with no body.
        self.answer(r.status, data, keep, r.getheader("Content-Length") if self.command == "HEAD" else None)
        up.close()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler)
server.daemon_threads = True
server.serve_forever()
