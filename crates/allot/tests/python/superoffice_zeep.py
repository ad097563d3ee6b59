"""Drives allot's SuperOffice SOAP services with zeep, a generic SOAP toolkit that knows nothing
about allot: it reads the served WSDLs and builds every request from them.

usage: superoffice_zeep.py BASE_URL LOGIN PASSWORD ASSOCIATE_ID LOGGED_ON_ID
Prints one JSON object describing what each call answered; exits non-zero on any surprise.
"""
import json
import sys

import zeep
from zeep.exceptions import Fault

base, login, password, associate, logged_on = sys.argv[1:6]
associate, logged_on = int(associate), int(logged_on)
report = {}


def client(version, service):
    return zeep.Client(f"{base}/Remote/Services{version}/{service}.svc?wsdl")


def header_value(result, name):
    headers = result["header"] if isinstance(result, dict) else result.header
    return getattr(headers, name, None) if headers is not None else None


for version in (75, 86, 88):
    principal = client(version, "SoPrincipal")
    bad = principal.service.AuthenticateUsernamePassword(UserName=login, Password="wrong password!")
    assert bad.body.AuthenticationSucceeded is False, bad
    # zeep reads a nil carrier as an object whose fields are all None.
    assert bad.body.Credentials is None or bad.body.Credentials.Ticket is None, bad
    good = principal.service.AuthenticateUsernamePassword(UserName=login, Password=password)
    assert good.body.AuthenticationSucceeded is True, good
    ticket = good.body.Credentials.Ticket
    assert ticket.startswith("7T:"), ticket
    assert good.body.Response.Associate == login, good.body.Response
    headers = {"Credentials": {"Ticket": ticket}, "ApplicationToken": "1234567-1234-9876"}

    user = client(version, "User")
    removed = user.service.RemoveLicenses(AssociateId=associate, _soapheaders=headers)
    assert header_value(removed, "Succeeded") is True, removed
    # A bad ticket is reported in the ExceptionInfo header, not as a fault.
    refused = user.service.RemoveLicenses(
        AssociateId=associate, _soapheaders={"Credentials": {"Ticket": "7T:not-a-ticket"}}
    )
    assert header_value(refused, "Succeeded") is False, refused
    info = header_value(refused, "ExceptionInfo")
    assert info is not None and info.ExceptionType == "SoSessionException", refused
    entry = {"ticket_prefix": ticket[:3], "remove_licenses": "ok", "bad_ticket": info.ExceptionType}

    if version >= 81:
        associate_svc = client(version, "Associate")
        logged_off = associate_svc.service.LogOffWindowsUsers(
            AssociateIds={"int": [logged_on]}, _soapheaders=headers
        )
        assert header_value(logged_off, "Succeeded") is True, logged_off
        entry["log_off"] = "ok"
    else:
        # Services75 has no LogOffWindowsUsers: the WSDL does not offer it.
        try:
            client(version, "Associate").service.LogOffWindowsUsers
            raise AssertionError("Services75 Associate offers LogOffWindowsUsers")
        except AttributeError:
            entry["log_off"] = "absent"

    licenses = client(version, "License")
    owners = licenses.service.GetUserLicenses(AssociateId=associate, _soapheaders=headers)
    assert header_value(owners, "Succeeded") is True, owners
    body = owners.body.Response
    entry["owners"] = [o.Name for o in (body.LicenseOwner if body is not None else [])]
    if version >= 83:
        links = licenses.service.GetThirdPartyLicenseAssignments(
            AssociateId=associate, ModuleOwner="saepe", _soapheaders=headers
        )
        entry["third_party_fields"] = list(
            links.body.Response.ModuleLicenseLink[0].__values__.keys()
        )
    report[str(version)] = entry

# An operation the WSDL does not declare is a fault.
try:
    client(88, "User").service._binding.get("NoSuchOperation")
    raise AssertionError("unknown operation accepted")
except (ValueError, KeyError, zeep.exceptions.Error):
    pass

print(json.dumps(report))
