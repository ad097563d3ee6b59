//! Offline license files on both stores: signing keys (made with the tenant, rotated, sealed),
//! the claims of a user's and a seat's file checked against the ledger, and verification against
//! the tenant's JWK Set only.

use allot_ledger::testing as common;

use allot_ledger::keys::{KeyVault, VerifyError, verify_compact};
use allot_ledger::*;
use common::{Fixture, TestDb};
use time::Duration;

fn by_id(user: &User) -> UserRef {
    UserRef::Id(user.id)
}

fn pid(product: &Product) -> ProductRef {
    ProductRef::Id(product.id)
}

async fn private_keys(f: &Fixture) -> Vec<String> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(&f.db.url()).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar("SELECT private_key FROM signing_keys ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    rows
}

on_both_stores! {
    async fn a_tenant_is_made_with_a_signing_key_and_its_creation_is_audited(f: Fixture) {
        let jwks = f.ledger.jwks(f.tenant.id).await.unwrap();
        assert_eq!(jwks.keys.len(), 1);
        let key = &jwks.keys[0];
        assert_eq!((key.kty.as_str(), key.crv.as_str()), ("OKP", "Ed25519"));
        assert_eq!(key.kid, keys::thumbprint(&key.x));
        let audit = f.ledger.audit(f.tenant.id, &AuditFilter::default()).await.unwrap();
        let created: Vec<_> = audit.iter().filter(|e| e.action == "signing_key.create").collect();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].detail["after"]["kid"], key.kid.as_str());
        // Nothing of the private key reaches the audit trail.
        let sealed = &private_keys(&f).await[0];
        assert!(sealed.starts_with("plain:"));
        let secret = sealed.trim_start_matches("plain:");
        assert!(!audit.iter().any(|e| e.detail.to_string().contains(secret)));
        // A second first key is not made.
        assert!(!f.ledger.ensure_signing_key(&f.ctx).await.unwrap());
    }

    async fn a_user_file_holds_what_the_ledger_says_and_verifies_with_the_jwks(f: Fixture) {
        let user = f.product(NewProduct { expires_at: Some(common::START + Duration::days(1)), ..NewProduct::user("SuperOffice", "user", 2) }).await;
        let web = f.product(NewProduct { prerequisite: Some(pid(&user)), ..NewProduct::user("SuperOffice", "web", 2) }).await;
        let other = f.user_product("other", 1).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &user).await.unwrap();
        f.assign(&ann, &web).await.unwrap();
        let seats = f.seats_of(&ann).await;
        let web_seat = seats.iter().find(|s| s.product == web.id).unwrap().clone();
        let pc = Activation { hardware_id: "HID-1".into(), computer_name: "PC1".into(), operating_system: "Windows".into() };
        f.ok(Command::ActivateSeat { seat: web_seat.id, activation: pc.clone(), user: None }).await;

        let file = f.ledger.user_license(f.tenant.id, &by_id(&ann)).await.unwrap();
        let jwks = f.ledger.jwks(f.tenant.id).await.unwrap();
        let claims = verify_compact(&file.token, &jwks, common::START).unwrap();
        assert_eq!(claims, serde_json::to_value(&file.claims).unwrap());
        assert_eq!(claims["iss"], "allot:acme");
        assert_eq!(claims["sub"], ann.uuid.to_string());
        assert_eq!(claims["tenant"]["id"], f.tenant.id);
        assert_eq!(claims["user"]["login"], "ann");
        assert_eq!(claims["iat"], common::START.unix_timestamp());
        assert_eq!(claims["nbf"], claims["iat"]);
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 7 * 24 * 3600);
        let products: Vec<i64> = file.claims.products.iter().map(|p| p.id).collect();
        assert_eq!(products, [user.id, web.id]);
        assert!(!products.contains(&other.id));
        let mut held: Vec<_> = seats.iter().map(|s| s.id).collect();
        let mut in_file: Vec<_> = file.claims.seats.iter().map(|s| s.id).collect();
        held.sort();
        in_file.sort();
        assert_eq!(in_file, held);
        let in_file_web = file.claims.seats.iter().find(|s| s.id == web_seat.id).unwrap();
        assert_eq!(in_file_web.device.as_ref(), Some(&pc));
        let user_entry = file.claims.products.iter().find(|p| p.id == user.id).unwrap();
        assert_eq!(user_entry.expires_at, Some(common::START + Duration::days(1)));

        // Once the prerequisite expires, the dependent module leaves the file too.
        f.clock.advance(Duration::days(2));
        let later = f.ledger.user_license(f.tenant.id, &by_id(&ann)).await.unwrap();
        assert!(later.claims.products.is_empty(), "{:?}", later.claims.products);
        assert!(later.claims.seats.is_empty());
        assert!(matches!(
            f.ledger.seat_license(f.tenant.id, web_seat.id).await.unwrap_err(),
            LedgerError::PrerequisiteMissing { product, .. } if product == web.id
        ));
    }

    async fn a_seat_file_names_its_holder_and_device(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &crm).await.unwrap();
        let seat = f.seats_of(&ann).await.remove(0);
        let pc = Activation { hardware_id: "HID-9".into(), computer_name: "PC9".into(), operating_system: "Linux".into() };
        f.ok(Command::ActivateSeat { seat: seat.id, activation: pc.clone(), user: None }).await;
        let file = f.ledger.seat_license(f.tenant.id, seat.id).await.unwrap();
        let claims = verify_compact(&file.token, &f.ledger.jwks(f.tenant.id).await.unwrap(), common::START).unwrap();
        assert_eq!(claims["user"]["id"], ann.id);
        assert_eq!(claims["seats"].as_array().unwrap().len(), 1);
        assert_eq!(claims["seats"][0]["id"], seat.id.to_string());
        assert_eq!(claims["seats"][0]["device"]["hardware_id"], "HID-9");
        assert_eq!(claims["products"][0]["seats"][0], seat.id.to_string());
        let free = f.ledger.seats(f.tenant.id, &SeatFilter { available: Some(true), ..Default::default() }).await.unwrap();
        assert_eq!(f.ledger.seat_license(f.tenant.id, free[0].id).await.unwrap_err(), LedgerError::NotHeld(free[0].id));
    }

    async fn rotation_signs_with_the_new_key_and_old_files_still_verify(f: Fixture) {
        let ann = f.user("ann").await;
        let old = f.ledger.user_license(f.tenant.id, &by_id(&ann)).await.unwrap();
        let first = f.ledger.jwks(f.tenant.id).await.unwrap().keys[0].kid.clone();
        let rotated = f.ledger.rotate_signing_key(&f.ctx).await.unwrap();
        assert_ne!(rotated.kid, first);
        assert_eq!(rotated.seq, 2);
        let new = f.ledger.user_license(f.tenant.id, &by_id(&ann)).await.unwrap();
        let jwks = f.ledger.jwks(f.tenant.id).await.unwrap();
        assert_eq!(jwks.keys.len(), 2);
        assert!(verify_compact(&old.token, &jwks, common::START).is_ok());
        assert!(verify_compact(&new.token, &jwks, common::START).is_ok());
        let header = |token: &str| -> serde_json::Value {
            use base64::Engine;
            let h = token.split('.').next().unwrap();
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
        };
        assert_eq!(header(&old.token)["kid"], first.as_str());
        assert_eq!(header(&new.token)["kid"], rotated.kid.as_str());
        assert_eq!(header(&new.token)["alg"], "EdDSA");
        let audit = f.ledger.audit(f.tenant.id, &AuditFilter::default()).await.unwrap();
        assert_eq!(audit.iter().filter(|e| e.action == "signing_key.create").count(), 2);
        // Past its exp a file no longer verifies.
        assert!(matches!(
            verify_compact(&old.token, &jwks, common::START + Duration::days(8)),
            Err(VerifyError::Expired(_))
        ));
    }

    async fn another_tenants_key_and_a_changed_byte_are_rejected(f: Fixture) {
        let ann = f.user("ann").await;
        let file = f.ledger.user_license(f.tenant.id, &by_id(&ann)).await.unwrap();
        let jwks = f.ledger.jwks(f.tenant.id).await.unwrap();
        let globex = f.ledger.create_tenant("globex", "test").await.unwrap();
        let gctx = Context::new(globex.id, "test");
        let bob = f.ledger.execute(&gctx, Command::CreateUser(NewUser::named("bob"))).await.unwrap();
        let Outcome::User(bob) = bob else { panic!() };
        let foreign = f.ledger.user_license(globex.id, &by_id(&bob)).await.unwrap();
        assert!(matches!(verify_compact(&foreign.token, &jwks, common::START), Err(VerifyError::UnknownKey(_))));
        // Globex's signature under acme's kid: the signature does not verify.
        let mut parts: Vec<&str> = foreign.token.split('.').collect();
        let acme_parts: Vec<&str> = file.token.split('.').collect();
        parts[0] = acme_parts[0];
        assert_eq!(verify_compact(&parts.join("."), &jwks, common::START), Err(VerifyError::BadSignature));
        // One byte of the payload changed.
        let mut bytes = file.token.clone().into_bytes();
        let at = acme_parts[0].len() + 5;
        bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
        assert!(verify_compact(std::str::from_utf8(&bytes).unwrap(), &jwks, common::START).is_err());
    }

    async fn validity_is_chosen_per_tenant(f: Fixture) {
        let ann = f.user("ann").await;
        assert_eq!(f.ledger.license_validity(f.tenant.id).await.unwrap(), 7 * 24 * 3600);
        let e = f.err(Command::SetLicenseValidity { seconds: 0 }).await;
        assert!(matches!(e, LedgerError::Invalid { field: "validity_seconds", .. }), "{e:?}");
        f.ok(Command::SetLicenseValidity { seconds: 3600 }).await;
        let file = f.ledger.user_license(f.tenant.id, &by_id(&ann)).await.unwrap();
        assert_eq!(file.claims.exp - file.claims.iat, 3600);
        let audit = f.ledger.audit(f.tenant.id, &AuditFilter::default()).await.unwrap();
        assert_eq!(audit.last().unwrap().action, "license.validity");
    }

    async fn private_keys_are_sealed_with_the_configured_key(f: Fixture) {
        use base64::Engine;
        let secret = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
        let sealed_ledger = Ledger::open(&f.db.url()).await.unwrap()
            .with_key_vault(KeyVault::from_base64(&secret).unwrap());
        let globex = sealed_ledger.create_tenant("globex", "test").await.unwrap();
        let gctx = Context::new(globex.id, "test");
        let Outcome::User(bob) = sealed_ledger.execute(&gctx, Command::CreateUser(NewUser::named("bob"))).await.unwrap() else { panic!() };
        let file = sealed_ledger.user_license(globex.id, &by_id(&bob)).await.unwrap();
        let jwks = sealed_ledger.jwks(globex.id).await.unwrap();
        assert!(verify_compact(&file.token, &jwks, sealed_ledger.now_time()).is_ok());
        assert!(private_keys(&f).await.iter().any(|k| k.starts_with("chacha20poly1305:")));
        // Without the key (or with another) the sealed key does not open: a clear refusal.
        let e = f.ledger.user_license(globex.id, &by_id(&bob)).await.unwrap_err();
        assert!(e.to_string().contains("no license key encryption key"), "{e}");
        let wrong = Ledger::open(&f.db.url()).await.unwrap()
            .with_key_vault(KeyVault::from_base64(&base64::engine::general_purpose::STANDARD.encode([1u8; 32])).unwrap());
        assert!(wrong.user_license(globex.id, &by_id(&bob)).await.is_err());
        sealed_ledger.close().await;
        wrong.close().await;
    }

    async fn a_tenant_without_a_key_gets_one_when_first_needed(f: Fixture) {
        use sqlx::Connection;
        let ann = f.user("ann").await;
        let mut conn = sqlx::AnyConnection::connect(&f.db.url()).await.unwrap();
        sqlx::query("DELETE FROM signing_keys").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        assert!(f.ledger.jwks(f.tenant.id).await.unwrap().keys.is_empty());
        let file = f.ledger.user_license(f.tenant.id, &by_id(&ann)).await.unwrap();
        let jwks = f.ledger.jwks(f.tenant.id).await.unwrap();
        assert_eq!(jwks.keys.len(), 1);
        assert!(verify_compact(&file.token, &jwks, common::START).is_ok());
    }
}
