"""The PyPI `msp360` client (0.0.1.dev1, pinned in requirements.txt) against allot.

Its `Msp360` class hard-codes `https://api.mspbackups.com/api/` as httpx's base URL and logs
in from its constructor, so the only change made here is to point httpx at the test server:
`msp360.client.Client` (httpx.Client as the module imported it) is replaced by a subclass
that swaps the base URL. Everything else is the client's own code.

Usage: msp360_pypi_client.py BASE_URL LOGIN PASSWORD LICENSE_ID
Prints one JSON object: what each call answered (or which exception it raised).
"""

import json
import sys
import uuid

import httpx

import msp360.client as msp360_client
from msp360.exceptions import ClientError, ResourceNotFound
from msp360.models import UserModeType

BASE = sys.argv[1].rstrip('/') + '/api/'
LOGIN, PASSWORD, LICENSE_ID = sys.argv[2:5]


class PointedClient(httpx.Client):
    def __init__(self, *args, **kwargs):
        kwargs['base_url'] = BASE
        super().__init__(*args, **kwargs)


msp360_client.Client = PointedClient


def outcome(call):
    """Runs a call; answers its result, or the exception's type, status and message."""
    try:
        return {'ok': call()}
    except httpx.HTTPStatusError as e:
        return {'raised': 'HTTPStatusError', 'status': e.response.status_code,
                'body': e.response.text}
    except (ResourceNotFound, ClientError, ValueError, TypeError) as e:
        return {'raised': type(e).__name__, 'message': str(e)}


report = {}
api = msp360_client.Msp360(LOGIN, PASSWORD)  # logs in: POST /Provider/Login
report['logged_in'] = api.client.headers['authorization'].startswith('Bearer ')

report['get_users_before'] = outcome(api.get_users)
report['get_licenses'] = outcome(api.get_licenses)  # isAvailable=false
report['get_licenses_available'] = outcome(lambda: api.get_licenses(is_available=True))
report['get_license'] = outcome(lambda: api.get_license(LICENSE_ID))
report['get_license_unknown'] = outcome(lambda: api.get_license(str(uuid.uuid4())))
report['get_license_malformed'] = outcome(lambda: api.get_license('not-a-uuid'))

report['create_company'] = outcome(
    lambda: api.create_company('PyPI Company', storage_limit=-1, license_settings=1))
company_id = report['create_company'].get('ok')
report['get_companies'] = outcome(api.get_companies)
report['get_company'] = outcome(lambda: api.get_company(company_id))
report['get_company_unknown'] = outcome(lambda: api.get_company(str(uuid.uuid4())))

report['create_user'] = outcome(lambda: api.create_user(
    'pypi-user', 'pypi-password', first_name='Py', last_name='Pi',
    notification_emails='pypi@example.com', company='PyPI Company',
    license_management_mode=UserModeType.Manual))
user_id = report['create_user'].get('ok')
report['create_user_again'] = outcome(
    lambda: api.create_user('pypi-user', 'pypi-password'))
report['get_user'] = outcome(lambda: api.get_user(user_id))
report['get_users_after'] = outcome(api.get_users)
report['get_user_computers'] = outcome(lambda: api.get_user_computers(user_id))

# The wheel's license calls pass the body positionally to httpx.Client.post, which takes
# only the URL positionally: they fail in the client, before any request is sent.
report['grant_license'] = outcome(lambda: api.grant_license(user_id, LICENSE_ID))
report['revoke_license'] = outcome(lambda: api.revoke_license(user_id, LICENSE_ID))
report['release_license'] = outcome(lambda: api.release_license(user_id, LICENSE_ID))
# The client's own JSON `post` (what the GitHub version of these methods calls) works.
body = {'LicenseID': LICENSE_ID, 'UserID': user_id}
report['grant_via_post'] = outcome(lambda: api.post('Licenses/Grant', body))
report['license_after_grant'] = outcome(lambda: api.get_license(LICENSE_ID))
report['revoke_via_post'] = outcome(lambda: api.post('Licenses/Revoke', body))
report['release_via_post'] = outcome(lambda: api.post('Licenses/Release', body))
report['license_after_release'] = outcome(lambda: api.get_license(LICENSE_ID))
report['grant_again_via_post'] = outcome(lambda: api.post('Licenses/Grant', body))

# Deleting the user releases what it holds.
report['delete_user'] = outcome(lambda: api.delete_user(user_id))
report['delete_user_again'] = outcome(lambda: api.delete_user(user_id, remove_data=True))
report['delete_user_malformed'] = outcome(lambda: api.delete_user('not-a-uuid'))
report['license_after_delete'] = outcome(lambda: api.get_license(LICENSE_ID))
report['delete_company'] = outcome(lambda: api.delete_company(company_id))
report['delete_company_unknown'] = outcome(lambda: api.delete_company(str(uuid.uuid4())))
report['get_company_deleted'] = outcome(lambda: api.get_company(company_id))

# Calls for parts of the API allot does not implement (no ledger behind them).
report['unsupported'] = {
    'get_packages': outcome(api.get_packages),
    'get_monitoring': outcome(api.get_monitoring),
    'get_destinations': outcome(api.get_destinations),
    'get_accounts': outcome(api.get_accounts),
    'get_billing': outcome(api.get_billing),
    'get_builds': outcome(api.get_builds),
    'get_admins': outcome(api.get_admins),
    'get_user_by_login': outcome(lambda: api.get_user_by_login('x', 'y')),
}

print(json.dumps(report))
