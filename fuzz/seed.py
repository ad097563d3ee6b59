#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the protocol pages' examples and the tests' fixtures.

Run once when a target is added (then `cargo fuzz cmin` keeps the corpus small); each seed is
named by its SHA-1, as libFuzzer names what it adds. Usage: fuzz/seed.py PAGES_DIR...
(the SuperOffice and MSP360 reference and seed pages), from the repository root.
"""
import hashlib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    (out / hashlib.sha1(data).hexdigest()).write_bytes(data)


def blocks(text):
    for m in re.finditer(r"```([\w!_-]*)\n(.*?)```", text, re.S):
        body = re.sub(r"^\s*Sample:\s*\n", "", m.group(2))
        yield m.group(1).lower(), body.strip() + "\n"


def service_of(page_name, text):
    for name in ("soprincipal", "associate", "user", "license"):
        if name in page_name.lower():
            return {"soprincipal": "SoPrincipal"}.get(name, name.capitalize())
    return "License"


def http_request(block):
    head, _, body = block.partition("\n\n")
    lines = head.splitlines()
    if not lines or " " not in lines[0]:
        return None
    _, target = lines[0].split(" ", 1)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return target.strip(), headers, body


def from_page(path):
    text = path.read_text(errors="replace")
    msp = "msp360" in path.name
    for lang, block in blocks(text):
        start = block.lstrip()
        if start.startswith("<"):
            put("xml", block)
            if "Envelope" in block:
                version = re.search(r"NetServer/Services(\d+)", block)
                services = f"Services{version.group(1) if version else '88'}"
                put("soap", f"{services}/{service_of(path.name, text)}\n{block}")
            elif msp:
                root = re.match(r"\s*<([\w.:]+)", block).group(1).split(":")[-1]
                put("msp360", f"application/xml\n{root.split('.')[-1]}\n{block}")
                put("msp360", f"\n{root}\n{block}")
            else:
                put("superoffice_rest", f"application/xml\nLicense/GetUserLicenses\n\n{block}")
        elif start.startswith(("{", "[")):
            if msp:
                put("msp360", f"application/json\nLicenseOperation\n{block}")
            else:
                put("superoffice_rest", f"application/json\nLicense/GetUserLicenses\n\n{block}")
        elif lang.startswith("http") and re.match(r"(GET|POST|PUT|DELETE|PATCH) ", start):
            request = http_request(block)
            if not request:
                continue
            target, headers, body = request
            if "authorization" in headers:
                put("credentials", f"{headers['authorization']}\n{headers.get('cookie', '')}\n")
            agent = re.search(r"/Agents/(\w+)/(\w+)", target)
            select = re.search(r"\$select=([^&\s]*)", target)
            if agent:
                put(
                    "superoffice_rest",
                    f"{headers.get('content-type', '')}\n{agent.group(1)}/{agent.group(2)}\n"
                    f"{select.group(1) if select else ''}\n{body}",
                )
        elif lang == "toml":
            put("config", re.sub(r"(?m)^\s+", "", block))


# The tests' fixtures: bodies and credentials the suites send (tests/it/*.rs, unit tests).
FIXTURES = {
    "credentials": [
        "Basic YWRtaW46c2VjcmV0LXBhc3N3b3Jk\n\n",
        "basic Og==\n\n",
        "SOTicket 7T:c2VjcmV0dGlja2V0\nSoTicket=7T:c2VjcmV0dGlja2V0; XSRF-TOKEN=abc\n",
        "Bearer allot_0123456789abcdef0123456789abcdef\n\n",
        "bearer \ufeff7T:abc==\nXSRF-TOKEN=a;SoTicket=\ufeff7T:x\n",
    ],
    "superoffice_rest": [
        "application/x-www-form-urlencoded\nLicense/UnassignThirdPartyLicenses\n\n"
        "associateId=621&moduleNames[]=web&moduleNames[]=crm",
        "text/json\nUser/RemoveLicenses\nName,Licenses/ModuleLicenseId\n{\"associateId\": \"621\"}",
        "application/merge-patch+json\nAssociate/LogOffWindowsUsers\n\n"
        "{\"WindowsUserNames\": [\"CORP\\\\ann\"], \"extra\": null}",
        "application/json\nLicense/SetLicensesForAssociate\nReason\n"
        "{\"AssociateId\": 1.0, \"ModuleLicenseIds\": [1, 2147483648], \"Flag\": \"TRUE\"}",
    ],
    "msp360": [
        "application/x-www-form-urlencoded\nLoginUserBindingModel\n"
        "UserName=admin&Password=secret%20pass&password=again",
        "application/json\nUser\n{\"Email\": \"a@b.c\", \"Enabled\": \"true\", "
        "\"LicenseManagmentMode\": \"CompanySettings\", \"NotificationEmails\": [\"x@y.z\"]}",
        "application/json; charset=utf-8\nCompany\n"
        "{\"Name\": \"Acme\", \"LicenseSettings\": 2, \"StorageLimit\": \"12\"}",
        "\nLicenseOperation\nLicenseID=1&UserID=2",
        "application/xml\nUser\n<User xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">"
        "<Email>a@b.c</Email><Company i:nil=\"true\"/><NotificationEmails><string>x</string>"
        "</NotificationEmails></User>",
    ],
    "config": [
        'db = "sqlite://allot.db"\nlisten = "127.0.0.1:8080"\nmetrics_listen = "off"\n'
        "max_body = 1048576\nmax_connections = 4096\nheader_timeout = 10\nshutdown_grace = 20\n"
        'rate_limit = 0\ntoken_ttl_hours = 12\nlog_json = true\nsqlite_sync = "normal"\n'
        "[superoffice]\n"
        'online_tenants = ["acme"]\npublic_url = "https://allot.example.com"\n'
        "[msp360]\nforbidden_on_bad_login = [\"acme\"]\n",
        'license_key_encryption_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="\n',
    ],
    "xml": [
        '<?xml version="1.0"?><a xmlns="urn:x" xmlns:p="urn:p" p:q="1">t&amp;<b/>'
        "<![CDATA[<c>]]></a>",
    ],
}

if __name__ == "__main__":
    for directory in sys.argv[1:]:
        for page in sorted(pathlib.Path(directory).glob("*.md")):
            from_page(page)
    for target, seeds in FIXTURES.items():
        for seed in seeds:
            put(target, seed)
    for target in sorted(p.name for p in CORPUS.iterdir()):
        print(target, len(list((CORPUS / target).iterdir())))
