"""The web console in a real browser: Playwright for Python driving Debian's Chromium against
the real allot binary (started by tests/it/console_browser.rs).

Usage: console_playwright.py BASE_URL ADMIN_PASSWORD SCREENSHOT_DIR

Seeds the tenant through the native API (requests), then checks, as a person would with the
keyboard and mouse: logging in (and a wrong password's error), the dashboard's pools, assigning
a seat on a user's page (the page's in-use number and the API's both move), a form posted
without its CSRF token refused, the audit page showing a change made through the API without a
reload, the product chart drawing its points, a reader seeing no Assign button, the page at
375 px wide, and logging out. Saves a screenshot of every page. Exits non-zero on any failure.
"""

import os
import sys
import time

import requests
from playwright.sync_api import expect, sync_playwright

BASE, PASSWORD, SCREENS = sys.argv[1], sys.argv[2], sys.argv[3]
READER_PASSWORD = "reader-password-1"
os.makedirs(SCREENS, exist_ok=True)
expect.set_options(timeout=10_000)


def api_token():
    r = requests.post(f"{BASE}/v1/auth/login",
                      json={"tenant": "default", "login": "admin", "password": PASSWORD})
    r.raise_for_status()
    return r.json()["token"]


TOKEN = api_token()
API = requests.Session()
API.headers["Authorization"] = f"Bearer {TOKEN}"


def api(method, path, body=None, expected=(200, 201)):
    r = API.request(method, f"{BASE}{path}", json=body)
    assert r.status_code in expected, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def seed():
    crm = api("POST", "/v1/products", {"owner": "SuperOffice", "name": "crm", "seats": 3})
    api("POST", "/v1/products", {"owner": "SuperOffice", "name": "web", "seats": 2,
                                 "prerequisite": "SuperOffice/crm"})
    api("POST", "/v1/products/SuperOffice%2Fcrm/seats",
        {"count": 1, "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                  time.gmtime(time.time() + 10 * 86400))})
    acme = api("POST", "/v1/companies", {"name": "Acme", "pool_mode": "company"})
    api("PUT", f"/v1/companies/{acme['id']}/quotas/SuperOffice%2Fcrm", {"quota": 2})
    ann = api("POST", "/v1/users", {"login": "ann", "first_name": "Ann", "last_name": "Smith",
                                    "email": "ann@example.com", "company": "Acme"})
    bob = api("POST", "/v1/users", {"login": "bob", "first_name": "Bob"})
    api("POST", f"/v1/users/{bob['id']}/assignments", {"product": "SuperOffice/crm"})
    api("POST", "/v1/sessions", {"user": "bob", "client": "web", "device": "bob-laptop",
                                 "lease_seconds": 3600})
    api("POST", "/v1/logins", {"login": "rita", "password": READER_PASSWORD, "role": "reader"})
    return crm, ann


def shot(page, name):
    page.screenshot(path=os.path.join(SCREENS, f"{name}.png"), full_page=True)


def log_in(page, login, password):
    page.goto(f"{BASE}/")
    expect(page).to_have_url(f"{BASE}/console/login?next=%2Fconsole")
    page.get_by_label("Tenant").fill("default")
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def in_use_in_api(product_id):
    return api("GET", f"/v1/products/{product_id}")["status"]["in_use"]


def main():
    crm, ann = seed()
    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        problems = []
        # Script errors fail the test; a refused request (the wrong password's 401, the CSRF
        # refusal's 403) is logged by the browser as an error too, and is expected here.
        page.on("console", lambda m: problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        # A wrong password: an error on the form, not a blank page.
        log_in(page, "admin", "not-the-password")
        expect(page.get_by_role("alert")).to_have_text("Wrong tenant, login or password.")
        expect(page.get_by_label("Password")).to_be_visible()
        shot(page, "login-error")

        # Log in; the dashboard shows every pool.
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
        for name in ["Dashboard", "Products", "Users", "Sessions", "Companies", "Audit", "Tokens"]:
            expect(page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)).to_be_visible()
        crm_row = page.locator("table.pools tr[data-product='SuperOffice/crm']")
        expect(crm_row.locator("td.total")).to_have_text("4")
        expect(crm_row.locator("td.in-use")).to_have_text("1")
        expect(page.locator("table.pools tr[data-product='SuperOffice/web'] td.total")).to_have_text("2")
        expect(page.get_by_role("link", name="SuperOffice/crm").first).to_be_visible()
        expect(page.get_by_text("Expiring in the next 30 days")).to_be_visible()
        shot(page, "dashboard")

        # Products and a product's page with its chart.
        page.get_by_role("link", name="Products", exact=True).click()
        expect(page.get_by_role("heading", name="Products", level=1)).to_be_visible()
        shot(page, "products")
        page.get_by_role("link", name="SuperOffice/crm").first.click()
        expect(page.get_by_role("heading", name="SuperOffice/crm", level=1)).to_be_visible()
        expect(page.get_by_role("link", name="bob").first).to_be_visible()
        chart = page.locator("#usage-chart")
        if chart.count() > 0:
            page.wait_for_function(
                "() => { const c = document.querySelector('#usage-chart canvas');"
                " return c && Number(document.querySelector('#usage-chart').dataset.drawn) > 0; }")
            drawn = page.evaluate(
                "() => { const c = document.querySelector('#usage-chart canvas');"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let ink = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;"
                " return {points: Number(document.querySelector('#usage-chart').dataset.drawn), ink}; }")
            assert drawn["points"] > 0 and drawn["ink"] > 100, drawn
            print(f"chart: {drawn['points']} points, {drawn['ink']} pixels drawn")
        else:
            print("chart: no usage history in this build")
        shot(page, "product")

        # Users: search as you type (htmx), then ann's page.
        page.get_by_role("link", name="Users", exact=True).click()
        page.get_by_label("Search users").fill("smith")
        expect(page.locator("#users-table").get_by_role("link", name="bob")).to_have_count(0)
        expect(page.locator("#users-table").get_by_role("link", name="ann")).to_be_visible()
        shot(page, "users")
        page.locator("#users-table").get_by_role("link", name="ann").click()
        expect(page.get_by_role("heading", name="ann", level=1)).to_be_visible()
        expect(page.get_by_role("link", name="Acme")).to_be_visible()

        # Assign: the page's in-use number and the API's both move.
        row = page.locator("table.licenses tr[data-product='SuperOffice/crm']")
        expect(row.locator("td.in-use")).to_have_text("1")
        before = in_use_in_api(crm["id"])
        row.get_by_role("button", name="Assign SuperOffice/crm").click()
        expect(page.get_by_role("status").filter(has_text="Assigned SuperOffice/crm to ann.")).to_be_visible()
        expect(row.locator("td.in-use")).to_have_text("2")
        assert in_use_in_api(crm["id"]) == before + 1
        expect(row.get_by_role("button", name="Unassign SuperOffice/crm")).to_be_visible()
        expect(page.locator("table.licenses tr[data-product='SuperOffice/web']")
               .get_by_role("button", name="Assign SuperOffice/web")).to_be_visible()
        shot(page, "user")

        # The same form without its CSRF token is refused and changes nothing.
        page.evaluate("() => document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
        row.get_by_role("button", name="Unassign SuperOffice/crm").click()
        expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
        assert in_use_in_api(crm["id"]) == before + 1
        shot(page, "csrf-refused")

        # Sessions, companies.
        page.goto(f"{BASE}/console/sessions")
        expect(page.get_by_role("cell", name="bob-laptop")).to_be_visible()
        expect(page.get_by_role("button", name="Log off bob")).to_be_visible()
        shot(page, "sessions")
        page.get_by_role("link", name="Companies", exact=True).click()
        page.get_by_role("link", name="Acme").click()
        expect(page.get_by_role("heading", name="Acme", level=1)).to_be_visible()
        expect(page.get_by_role("link", name="ann")).to_be_visible()
        shot(page, "company")
        page.get_by_role("link", name="Companies", exact=True).click()
        shot(page, "companies")

        # The audit page shows a change made through the API, without a reload.
        page.get_by_role("link", name="Audit", exact=True).click()
        expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
        page.evaluate("() => { window.allotNotReloaded = true; }")
        api("POST", "/v1/users", {"login": "zed-from-the-api"})
        expect(page.locator("#audit-rows tr").first).to_contain_text("user.create", timeout=15_000)
        expect(page.locator("#audit-rows").get_by_role("link", name="zed-from-the-api")).to_be_visible()
        assert page.evaluate("() => window.allotNotReloaded === true"), "the page was reloaded"
        shot(page, "audit")

        # Tokens: created, shown once.
        page.get_by_role("link", name="Tokens", exact=True).click()
        page.get_by_label("Label").fill("ci-robot")
        page.get_by_role("button", name="Create token").click()
        secret = page.get_by_label("Token", exact=True).input_value()
        assert secret.startswith("allot_"), secret
        assert requests.get(f"{BASE}/v1/products",
                            headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        shot(page, "tokens")
        page.get_by_role("link", name="Tokens", exact=True).click()
        assert secret not in page.content()

        # 375 px wide: nothing sticks out sideways (wide tables scroll in their own box).
        page.set_viewport_size({"width": 375, "height": 812})
        for path, name in [("/console", "dashboard-375"), (f"/console/users/{ann['id']}", "user-375")]:
            page.goto(f"{BASE}{path}")
            overflow = page.evaluate("() => document.documentElement.scrollWidth")
            assert overflow <= 375, f"{path} is {overflow} px wide at 375"
            shot(page, name)
        page.set_viewport_size({"width": 1280, "height": 900})

        # Log out: the session is gone.
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("status")).to_have_text("You are logged out.")
        page.goto(f"{BASE}/console/users")
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
        shot(page, "login")

        # A reader, logged in with the keyboard alone, sees no button that changes anything.
        page.goto(f"{BASE}/console/login")
        page.get_by_label("Tenant").fill("default")
        page.get_by_label("Login").focus()
        page.keyboard.type("rita")
        page.keyboard.press("Tab")
        page.keyboard.type(READER_PASSWORD)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
        page.goto(f"{BASE}/console/users/{ann['id']}")
        expect(page.get_by_role("heading", name="ann", level=1)).to_be_visible()
        expect(page.get_by_role("button", name="Assign")).to_have_count(0)
        expect(page.get_by_role("button", name="Unassign")).to_have_count(0)
        expect(page.get_by_role("button", name="Retire")).to_have_count(0)
        expect(page.get_by_role("link", name="Tokens", exact=True)).to_have_count(0)
        shot(page, "reader-user")

        browser.close()
        assert not problems, f"browser console errors: {problems}"
    print(f"console in chromium: ok in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
