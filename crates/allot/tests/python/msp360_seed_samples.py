"""The MSP360 documentation's Python samples, run against allot.

The two seed pages (Release and Revoke License from User) carry a `requests` sample each. They
are copied below unchanged except for the host (`https://api.mspbackups.com` becomes `BASE`)
and, at the call sites, real ids instead of the placeholders. Grant and login have no seed
page; they are written in the same style.

Usage: msp360_seed_samples.py BASE_URL LOGIN PASSWORD ACTION LICENSE_ID USER_ID
ACTION is grant, revoke or release. Prints what the samples print, then `RESULT <value>`
with the sample function's return value.

Note the samples' own error branch: it ends in `return ...status_code()`, calling an int, so
on any non-200 answer the sample prints "Error :<status>" and then raises TypeError. The
caller below catches that and prints `SAMPLE-BUG TypeError` so the test can see both.
"""

import sys

import requests

BASE = sys.argv[1].rstrip('/')


def getToken(userName, password):
		loginRequest = requests.post(BASE + '/api/Provider/Login', json = {"UserName" : userName, "Password" : password})
		return loginRequest.json()["access_token"]


def grantLicenseToUser(token, licenseID, userID):
		grantLicenseToUserRequest = requests.post(BASE + '/api/Licenses/Grant', headers = {"Authorization": "Bearer " + token}, json = {"LicenseID" : licenseID, "UserID" : userID})

		if grantLicenseToUserRequest.status_code == 200:
			print("200")
			try:
				print(grantLicenseToUserRequest.json())
				return 1
			except:
				return 0
		else:
			print("Error :" + str(grantLicenseToUserRequest.status_code))
			return grantLicenseToUserRequest.status_code()


# --- seed page "Release License from User", sample unchanged but for the host ---------------
def releaseLicenseFromUser(token, licenseID, userID):
		releaseLicenseFromUserRequest = requests.post(BASE + '/api/Licenses/Release', headers = {"Authorization": "Bearer " + token}, json = {"LicenseID" : licenseID, "UserID" : userID})

		if releaseLicenseFromUserRequest.status_code == 200:
			print("200")
			try:
				print(releaseLicenseFromUserRequest.json())
				return 1
			except:
				return 0
		else:
			print("Error :" + str(releaseLicenseFromUserRequest.status_code))
			return releaseLicenseFromUserRequest.status_code()


# --- seed page "Revoke License from User", sample unchanged but for the host ----------------
def revokeLicenseFromUser(token, licenseID, userID):
		revokeLicenseFromUserRequest = requests.post(BASE + '/api/Licenses/Revoke', headers = {"Authorization": "Bearer " + token}, json = {"LicenseID" : licenseID, "UserID" : userID})

		if revokeLicenseFromUserRequest.status_code == 200:
			print("200")
			try:
				print(revokeLicenseFromUserRequest.json())
				return 1
			except:
				return 0
		else:
			print("Error :" + str(revokeLicenseFromUserRequest.status_code))
			return revokeLicenseFromUserRequest.status_code()


if __name__ == '__main__':
	login, password, action, licenseID, userID = sys.argv[2:7]
	MBSAPItoken = getToken(login, password)
	sample = {
		'grant': grantLicenseToUser,
		'release': releaseLicenseFromUser,
		'revoke': revokeLicenseFromUser,
	}[action]
	try:
		result = sample(MBSAPItoken, licenseID, userID)
	except TypeError as e:
		print("SAMPLE-BUG TypeError: " + str(e))
		result = None
	print("RESULT " + str(result))
