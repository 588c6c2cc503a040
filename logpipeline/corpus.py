"""A seeded, labelled log corpus over three Gateway instances: benign traffic, one sample of each attack kind the
detectors know, and benign look-alikes that must not be flagged. ``manage.py make_log_corpus`` writes it out;
the tests and ``bench/logs_correlate.py`` generate it in memory.

Every line carries a label: ``benign``, ``benign:<look-alike>`` or ``attack:<kind>``. ``EXPECTED`` names, for each
attack kind, the security event (type and subject) a correct pipeline reports. The same seed gives the same lines.

Instances ``gw-1`` and ``gw-2`` log in UTC, ``gw-3`` in local time (+02:00), so the corpus also checks the UTC
normalisation. The Gateway's WAF text lines (``gateway-text``) carry the WAF-block burst; ``benign_lines``
scales the benign part (the benchmark asks for a million lines, in nginx combined only).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

INSTANCES = ("gw-1", "gw-2", "gw-3")
START = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)
_ZONES = {"gw-1": UTC, "gw-2": UTC, "gw-3": timezone(timedelta(hours=2))}

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SEARCH_WORDS = ("shoes", "red+dress", "laptop", "coffee", "O%27Brien", "select+a+size", "union+jack+flag",
                "rock+%27n%27+roll", "%3C3+gifts", "drop+shipping")

# attack kind -> (security event type, subject) a correct pipeline reports
EXPECTED: dict[str, tuple[str, str]] = {
    "login_bruteforce": ("login_bruteforce", "45.33.1.10"),
    "login_bruteforce_split": ("login_bruteforce_split", "45.33.2.20"),
    "path_probing": ("path_probing", "185.220.1.5"),
    "sqli": ("sqli_probing", "91.240.1.7"),
    "xss": ("xss_probing", "91.240.2.8"),
    "traversal": ("traversal_probing", "91.240.3.9"),
    "distributed_probing": ("distributed_probing", "103.77.5.0/24"),
    "bad_user_agent": ("bad_user_agent", "5.188.1.1"),
    "waf_block_burst": ("waf_block_burst", "77.88.1.2"),
    "error_rate_spike": ("error_rate_spike", "/api/payments/{id}"),
    "traffic_spike": ("traffic_spike", "/api/search"),
}
LOOK_ALIKE_SUBJECTS = {
    "typo_user": "198.51.100.20",  # mistypes the password twice, then logs in
    "crawler": "66.249.66.0/24",  # Googlebot from many addresses of one /24, with 404s on ordinary pages
    "office": "192.0.2.0/24",  # a NATed office: many users, some 404s, one stray /wp-login.php
    "monitor": "198.51.100.99",  # curl on /health every 10 s
    "quoted_search": "198.51.100.44",  # searches for O'Brien and "select a size"
}


@dataclass(frozen=True, slots=True)
class CorpusLine:
    ts: float
    instance: str
    fmt: str  # nginx-combined | gateway-text
    line: str
    label: str


def _combined(ts: float, instance: str, ip: str, method: str, uri: str, status: int, size: int, ua: str,
              referer: str = "-") -> str:
    when = datetime.fromtimestamp(ts, _ZONES[instance]).strftime("%d/%b/%Y:%H:%M:%S %z")
    return f'{ip} - - [{when}] "{method} {uri} HTTP/1.1" {status} {size} "{referer}" "{ua}"'


class _Builder:
    def __init__(self, seed: int, duration: float) -> None:
        self.rng = random.Random(seed)
        self.start = START.timestamp()
        self.duration = duration
        self.lines: list[CorpusLine] = []

    def at(self, offset: float) -> float:
        return self.start + offset

    def request(self, ts: float, ip: str, method: str, uri: str, status: int, ua: str, label: str,
                instance: str | None = None) -> None:
        instance = instance or self.rng.choice(INSTANCES)
        size = 0 if status in (204, 304, 404) else self.rng.randint(200, 40000)
        self.lines.append(CorpusLine(ts, instance, "nginx-combined",
                                     _combined(ts, instance, ip, method, uri, status, size, ua), label))

    def benign(self, count: int) -> None:
        rng = self.rng
        users = [f"{rng.randint(11, 99)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                 for _ in range(400)]
        pages = ("/", "/products", "/cart", "/about", "/static/app.js", "/static/app.css", "/api/orders")
        for _ in range(count):
            ts = self.at(rng.uniform(0, self.duration))
            ip, ua = rng.choice(users), rng.choice(BROWSERS)
            pick = rng.random()
            if pick < 0.35:
                uri, status = f"/products/{rng.randint(1, 5000)}", 200
            elif pick < 0.45:
                uri, status = f"/api/search?q={rng.choice(SEARCH_WORDS[:4])}&page={rng.randint(1, 5)}", 200
            elif pick < 0.47:
                uri, status = f"/api/payments/{rng.randint(1, 10 ** 6)}", rng.choice((200, 200, 200, 500))
            elif pick < 0.49:
                uri, status = f"/old/page-{rng.randint(1, 50)}.html", 404
            else:
                uri, status = rng.choice(pages), rng.choice((200, 200, 200, 304))
            method = "POST" if uri == "/api/orders" else "GET"
            self.request(ts, ip, method, uri, 201 if method == "POST" else status, ua, "benign")

    def look_alikes(self) -> None:
        rng = self.rng
        base = 120.0
        for i, status in enumerate((401, 401, 200)):  # typo_user: twice wrong, then right
            self.request(self.at(base + i * 9), LOOK_ALIKE_SUBJECTS["typo_user"], "POST", "/login", status,
                         BROWSERS[0], "benign:typo_user")
        for i in range(1500):  # crawler: steady, many pages, some 404s on ordinary paths, many addresses
            ip = f"66.249.66.{rng.randint(1, 40)}"
            uri = rng.choice((f"/products/{rng.randint(1, 5000)}", f"/old/page-{rng.randint(1, 500)}.html",
                              "/robots.txt", "/sitemap.xml", f"/category/{rng.randint(1, 30)}"))
            status = 404 if uri.startswith("/old/") else 200
            self.request(self.at(i * self.duration / 1500), ip, "GET", uri, status, GOOGLEBOT, "benign:crawler")
        for _ in range(300):  # a NATed office
            ip = f"192.0.2.{rng.randint(1, 60)}"
            uri = rng.choice(("/", "/products", f"/products/{rng.randint(1, 99)}", "/missing.png", "/favicon.ico"))
            status = 404 if uri in ("/missing.png", "/favicon.ico") else 200
            self.request(self.at(rng.uniform(0, self.duration)), ip, "GET", uri, status, rng.choice(BROWSERS),
                         "benign:office")
        self.request(self.at(600), "192.0.2.17", "GET", "/wp-login.php", 404, BROWSERS[1], "benign:office")
        for i in range(int(self.duration // 10)):
            self.request(self.at(i * 10.0), LOOK_ALIKE_SUBJECTS["monitor"], "GET", "/health", 200, "curl/8.4.0",
                         "benign:monitor")
        for i, word in enumerate(SEARCH_WORDS[4:]):
            self.request(self.at(300 + i * 20), LOOK_ALIKE_SUBJECTS["quoted_search"], "GET",
                         f"/api/search?q={word}", 200, BROWSERS[2], "benign:quoted_search")

    def attacks(self, with_waf_text: bool) -> None:
        rng = self.rng
        t = 400.0
        for i in range(30):
            self.request(self.at(t + i * 3), "45.33.1.10", "POST", "/login", 401, BROWSERS[0],
                         "attack:login_bruteforce", instance="gw-1")
        for i in range(12):  # 4 per instance: below the threshold of 10 on each, 12 in all
            self.request(self.at(t + 200 + i * 12), "45.33.2.20", "POST", "/login", 401, BROWSERS[3],
                         "attack:login_bruteforce_split", instance=INSTANCES[i % 3])
        for i, path in enumerate(("/.env", "/.git/config", "/wp-login.php", "/phpmyadmin/", "/backup.sql",
                                  "/.aws/credentials", "/server-status", "/config.php", "/.htpasswd", "/id_rsa")):
            self.request(self.at(t + 500 + i * 2), "185.220.1.5", "GET", path, 404, "Mozilla/5.0",
                         "attack:path_probing")
        payloads = {
            "sqli": ("91.240.1.7", ["/products?id=1%27%20OR%20%271%27%3D%271", "/products?id=1+UNION+SELECT+1,2,3",
                                    "/api/search?q=x%27%3B%20DROP%20TABLE%20users%3B--", "/products?id=1%20AND%20"
                                    "SLEEP(5)", "/products?id=-1%27%20union%20select%20password%20from%20users--"]),
            "xss": ("91.240.2.8", ["/api/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
                                   "/api/search?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
                                   "/api/search?q=javascript:alert(document.cookie)",
                                   "/api/search?q=%253Csvg%2520onload%253Dalert(1)%253E"]),
            "traversal": ("91.240.3.9", ["/download?file=../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fshadow",
                                         "/download?file=..%5c..%5cwindows%5cwin.ini",
                                         "/download?file=%252e%252e%252f%252e%252e%252fetc/hosts"]),
        }
        for n, (kind, (ip, uris)) in enumerate(payloads.items()):
            for i, uri in enumerate(uris):
                self.request(self.at(t + 700 + n * 60 + i * 5), ip, "GET", uri, rng.choice((200, 400, 403)),
                             BROWSERS[2], f"attack:{kind}")
        for i in range(10):  # ten addresses of one /24, two probes each
            for j, path in enumerate(("/.env", "/.git/HEAD")):
                self.request(self.at(t + 1000 + i * 4 + j), f"103.77.5.{10 + i}", "GET", path, 404, "Mozilla/5.0",
                             "attack:distributed_probing")
        for i in range(8):
            self.request(self.at(t + 1100 + i * 5), "5.188.1.1", "GET", f"/products?id={i}", 200,
                         "sqlmap/1.7.2#stable (https://sqlmap.org)", "attack:bad_user_agent")
        if with_waf_text:
            for i in range(15):
                ts = self.at(t + 1200 + i * 2)
                instance = INSTANCES[i % 3]
                stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                self.lines.append(CorpusLine(ts, instance, "gateway-text",
                                             f"{stamp}  WARN Request blocked by WAF: Rule sqli-block matched "
                                             f"client_ip=77.88.1.2", "attack:waf_block_burst"))
        for i in range(40):  # a payment backend failing for a minute: 30 of 40 answers are 503
            self.request(self.at(t + 1300 + i * 1.4), f"172.{16 + i % 8}.{i}.{rng.randint(1, 254)}", "GET",
                         f"/api/payments/{rng.randint(1, 10 ** 6)}", 503 if i % 4 else 200, BROWSERS[0],
                         "attack:error_rate_spike")
        for i in range(1500):  # a flash crowd on search: 25x its usual rate for a minute
            self.request(self.at(t + 1380 + i * 0.04), f"{rng.randint(11, 99)}.{rng.randint(0, 255)}."
                         f"{rng.randint(0, 255)}.{rng.randint(1, 254)}", "GET",
                         f"/api/search?q={rng.choice(SEARCH_WORDS[:4])}", 200, rng.choice(BROWSERS),
                         "attack:traffic_spike")


def generate(seed: int = 7, benign_lines: int = 20000, duration: float = 2400.0,
             with_waf_text: bool = True) -> list[CorpusLine]:
    """The corpus, sorted by time: ``benign_lines`` benign requests plus the look-alikes and the attacks."""
    builder = _Builder(seed, duration)
    builder.benign(benign_lines)
    builder.look_alikes()
    builder.attacks(with_waf_text)
    builder.lines.sort(key=lambda line: line.ts)
    return builder.lines


def batches(lines: list[CorpusLine], size: int = 2000) -> Iterator[tuple[str, str, list[str]]]:
    """(instance, fmt, lines) groups as shippers would send them: time-ordered chunks split per instance."""
    for start in range(0, len(lines), size):
        chunk = lines[start:start + size]
        groups: dict[tuple[str, str], list[str]] = {}
        for line in chunk:
            groups.setdefault((line.instance, line.fmt), []).append(line.line)
        for (instance, fmt), group in groups.items():
            yield instance, fmt, group
