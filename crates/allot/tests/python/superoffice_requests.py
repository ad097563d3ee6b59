"""Calls allot's SuperOffice REST agents with `requests`, as a NetServer integration would:
Basic and SOTicket authorization, JSON and XML bodies and answers, $select.

usage: superoffice_requests.py BASE_URL LOGIN PASSWORD TICKET ASSOCIATE_ID
Prints a JSON report; exits non-zero on any surprise.
"""
import base64
import json
import sys
import xml.etree.ElementTree as ET

import requests

base, login, password, ticket, associate = sys.argv[1:6]
associate = int(associate)
agents = f"{base}/api/v1/Agents"
basic = "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
report = {}

# Basic auth, JSON in and out.
r = requests.post(
    f"{agents}/License/AssignThirdPartyLicenses",
    headers={"Authorization": basic, "Accept": "application/json"},
    json={"AssociateId": associate, "ModuleOwner": "saepe", "ModuleLicenseNames": ["Watsica-Kirlin"]},
)
assert r.status_code == 200, (r.status_code, r.text)
links = r.json()
assigned = {l["Name"]: l["Assigned"] for l in links}
assert assigned["Watsica-Kirlin"] is True, links
assert list(links[0].keys())[:6] == ["Unrestricted", "Total", "Tooltip", "CanAssign", "Free", "InUse"], links[0]
report["assign_basic_json"] = assigned

# SOTicket (scheme in any case), XML in and out.
body = (
    "<AssociateId>{}</AssociateId><ModuleOwner>saepe</ModuleOwner>"
    "<ModuleLicenseNames><string>Watsica-Kirlin</string></ModuleLicenseNames>"
).format(associate)
r = requests.post(
    f"{agents}/License/UnassignThirdPartyLicenses",
    headers={"Authorization": f"soticket {ticket}", "Accept": "application/xml",
             "Content-Type": "application/xml"},
    data=f"<request>{body}</request>",
)
assert r.status_code == 200, (r.status_code, r.text)
root = ET.fromstring(r.content)
assert root.tag == "ArrayOfModuleLicenseLink", root.tag
states = {l.find("Name").text: l.find("Assigned").text for l in root.findall("ModuleLicenseLink")}
assert states["Watsica-Kirlin"] == "false", states
report["unassign_ticket_xml"] = states

# $select: the listed properties keep their values, the others come back null.
r = requests.post(
    f"{agents}/License/GetThirdPartyLicenseAssignments?$select=name,assigned",
    headers={"Authorization": f"SOTicket {ticket}"},
    json={"AssociateId": associate, "ModuleOwner": "saepe"},
)
assert r.status_code == 200, (r.status_code, r.text)
first = r.json()[0]
assert first["Name"] and first["Total"] is None and first["Assigned"] is not None, first
assert "Total" in first, first
report["select"] = first

# Void agents answer 204; unknown ids answer 200 null; unbindable input 400.
r = requests.post(f"{agents}/User/RemoveLicenses", headers={"Authorization": basic},
                  json={"AssociateId": associate})
assert r.status_code == 204, (r.status_code, r.text)
r = requests.post(f"{agents}/License/GetUserLicenses", headers={"Authorization": basic},
                  json={"AssociateId": 999999})
assert r.status_code == 200 and r.json() is None, (r.status_code, r.text)
r = requests.post(f"{agents}/License/GetUserLicenses", headers={"Authorization": basic},
                  json={"AssociateId": "glops"})
assert r.status_code == 400 and set(r.json()) == {"Message", "MessageDetail"}, (r.status_code, r.text)

# Wrong credentials are 401.
r = requests.post(f"{agents}/License/GetUserLicenses", auth=(login, "wrong password"),
                  json={"AssociateId": associate})
assert r.status_code == 401, (r.status_code, r.text)
r = requests.post(f"{agents}/License/GetUserLicenses", json={"AssociateId": associate})
assert r.status_code == 401, (r.status_code, r.text)

# The RESTful mirror and the principal.
r = requests.get(f"{base}/api/v1/License/saepe/{associate}", headers={"Authorization": basic})
assert r.status_code == 200 and isinstance(r.json(), list), (r.status_code, r.text)
r = requests.get(f"{base}/api/v1/License/saepe/Watsica-Kirlin", headers={"Authorization": basic})
assert r.status_code == 200 and r.json()["ModuleName"] == "Watsica-Kirlin", (r.status_code, r.text)
r = requests.get(f"{base}/api/v1/User/currentPrincipal", headers={"Authorization": f"SOTicket {ticket}"})
assert r.status_code == 200 and r.json()["UserName"] == login, (r.status_code, r.text)
report["restful"] = "ok"

print(json.dumps(report))
