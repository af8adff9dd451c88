//! Conformance checks for paging and re-sealing sealed values, and for plaintext never stored.

use super::fixtures::*;

/// Builds pending rows and connections with and without refresh tokens; returns every
/// sealed value in the order `sealed_values` must yield them.
pub(super) async fn seed_sealed(store: &Arc<dyn Store>, ring: &KeyRing) -> Vec<SealedValue> {
    let mut expected = Vec::new();
    let mut verifiers = std::collections::BTreeMap::new();
    for hash in ["s3", "s1", "s2"] {
        let row = pending(ring, hash, at(0), at(600));
        store.insert_pending(&row).await.unwrap();
        verifiers.insert(hash, row.verifier);
    }
    for (hash, verifier) in verifiers {
        expected.push(SealedValue {
            reference: SealedRef::pending(hash),
            value: verifier,
        });
    }
    let mut connection_values = Vec::new();
    let keys = [
        ("00DB00000000001", "api"),
        ("00Dab0000000001", "api"),
        ("00DB00000000001", "x"),
    ];
    for (index, (org_raw, context)) in keys.into_iter().enumerate() {
        let key = key(org_raw, context);
        let mut write = grant(ring, &key, context, at(0));
        if index == 1 {
            write.tokens.refresh_token = None;
        }
        let tokens = store.save_grant(&write).await.unwrap().connection.tokens;
        let mut values = vec![SealedValue {
            reference: SealedRef::connection(&key, SealedField::AccessToken),
            value: tokens.access_token,
        }];
        if let Some(refresh_token) = tokens.refresh_token {
            values.push(SealedValue {
                reference: SealedRef::connection(&key, SealedField::RefreshToken),
                value: refresh_token,
            });
        }
        connection_values.push((key, values));
    }
    connection_values.sort_by(|a, b| a.0.cmp(&b.0)); // keys are not Copy
    expected.extend(connection_values.into_iter().flat_map(|(_, values)| values));
    expected
}

pub(super) async fn sealed_values_page_through_every_value_exactly_once(store: Arc<dyn Store>) {
    let empty = store.sealed_values(None, 10).await.unwrap();
    assert!(empty.values.is_empty() && empty.next.is_none());
    let ring = ring();
    let expected = seed_sealed(&store, &ring).await;
    assert_eq!(expected.len(), 8);
    for limit in [1, 2, 3, 5, 8, 100] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _page in 0..=expected.len() + 1 {
            let page = store.sealed_values(cursor.as_deref(), limit).await.unwrap();
            assert!(
                page.values.len() <= limit as usize,
                "page over limit {limit}"
            );
            seen.extend(page.values);
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        assert!(cursor.is_none(), "paging with limit {limit} did not end");
        assert_eq!(seen, expected, "paging with limit {limit}");
    }
}

pub(super) async fn replace_sealed_is_a_compare_and_swap(store: Arc<dyn Store>) {
    let ring = ring();
    let values = seed_sealed(&store, &ring).await;
    let other_ring = self::ring();
    for stored in &values {
        let aad = stored.reference.aad();
        let plain = ring.open(&stored.value, &aad).unwrap();
        let replacement = other_ring.seal(plain.expose(), &aad);
        let wrong = ring.seal(plain.expose(), &aad);
        assert!(
            !store
                .replace_sealed(&stored.reference, &wrong, &replacement)
                .await
                .unwrap()
        );
        assert!(
            store
                .replace_sealed(&stored.reference, &stored.value, &replacement)
                .await
                .unwrap()
        );
        assert!(
            !store
                .replace_sealed(&stored.reference, &stored.value, &wrong)
                .await
                .unwrap()
        );
        assert_eq!(
            other_ring.open(&replacement, &aad).unwrap().expose(),
            plain.expose()
        );
    }
    let page = store.sealed_values(None, 100).await.unwrap();
    assert_eq!(page.values.len(), values.len());
    for (now, before) in page.values.iter().zip(&values) {
        assert_eq!(now.reference, before.reference);
        assert_ne!(now.value, before.value);
        assert!(other_ring.open(&now.value, &now.reference.aad()).is_ok());
    }
    // A connection without a refresh token has nothing to swap, and neither has a missing row.
    let no_refresh =
        SealedRef::connection(&key("00Dab0000000001", "api"), SealedField::RefreshToken);
    let some = ring.seal(b"x", &no_refresh.aad());
    assert!(
        !store
            .replace_sealed(&no_refresh, &some, &some)
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_sealed(&SealedRef::pending("absent"), &some, &some)
            .await
            .unwrap()
    );
    let connection = store
        .connection(&key("00DB00000000001", "api"))
        .await
        .unwrap()
        .unwrap();
    let reference = SealedRef::connection(&connection.key, SealedField::RefreshToken);
    let refresh_token = connection.tokens.refresh_token.unwrap();
    assert_eq!(
        open_text(&other_ring, &reference, &refresh_token),
        "refresh-api"
    );
}

pub(super) async fn stored_tokens_never_contain_the_plaintext(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    store
        .save_grant(&grant(&ring, &key, "plaintext-marker", at(0)))
        .await
        .unwrap();
    let connection = store.connection(&key).await.unwrap().unwrap();
    let refresh_token = connection.tokens.refresh_token.unwrap();
    for (bytes, plain) in [
        (
            connection.tokens.access_token.as_bytes(),
            "access-plaintext-marker",
        ),
        (refresh_token.as_bytes(), "refresh-plaintext-marker"),
    ] {
        assert!(
            !bytes
                .windows(plain.len())
                .any(|window| window == plain.as_bytes())
        );
    }
}
