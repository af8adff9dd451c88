//! Conformance checks for agent keys: round trip of every field, unique names, lookup by hash,
//! revocation by name or id that keeps the first time, and last use that never goes back.

use super::fixtures::*;
use crate::agents::{AgentKey, AgentScope, Capability};

fn agent(name: &str, hash_byte: char, scope: AgentScope, second: i64) -> AgentKey {
    AgentKey {
        id: format!("agk_{name}"),
        name: name.to_owned(),
        key_hash: std::iter::repeat_n(hash_byte, 64).collect(),
        scope,
        capabilities: vec![Capability::Proxy, Capability::Token],
        created_at: at(second),
        revoked_at: None,
        last_used_at: None,
    }
}

pub(super) async fn agent_keys_round_trip_and_names_are_unique(store: Arc<dyn Store>) {
    let one = agent(
        "one",
        'a',
        AgentScope::Orgs(vec![org("00D000000000062"), org("00D000000000063")]),
        1,
    );
    let all = AgentKey {
        capabilities: vec![Capability::Token],
        ..agent("all", 'b', AgentScope::AllOrgs, 2)
    };
    assert!(store.insert_agent_key(&one).await.unwrap());
    assert!(store.insert_agent_key(&all).await.unwrap());
    let clash = AgentKey {
        id: "agk_other".to_owned(),
        ..agent("one", 'c', AgentScope::AllOrgs, 3)
    };
    assert!(!store.insert_agent_key(&clash).await.unwrap());
    assert_eq!(
        store.agent_key_by_hash(&clash.key_hash).await.unwrap(),
        None
    );

    assert_eq!(
        store.agent_key_by_hash(&one.key_hash).await.unwrap(),
        Some(one.clone())
    );
    assert_eq!(
        store.agent_key_by_hash(&all.key_hash).await.unwrap(),
        Some(all.clone())
    );
    assert_eq!(store.agent_keys().await.unwrap(), vec![one, all]);
}

pub(super) async fn revoking_an_agent_key_by_name_or_id_keeps_the_first_time(
    store: Arc<dyn Store>,
) {
    let one = agent("one", 'a', AgentScope::AllOrgs, 1);
    let two = agent("two", 'b', AgentScope::AllOrgs, 1);
    store.insert_agent_key(&one).await.unwrap();
    store.insert_agent_key(&two).await.unwrap();
    assert_eq!(store.revoke_agent_key("nobody", at(5)).await.unwrap(), None);

    let revoked = store.revoke_agent_key("one", at(5)).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(5)));
    let again = store
        .revoke_agent_key(&one.id, at(9))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at, Some(at(5)));
    let by_id = store
        .revoke_agent_key(&two.id, at(7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_id.name, "two");
    assert_eq!(
        store
            .agent_key_by_hash(&one.key_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at(5))
    );
    // The name stays taken by the revoked key.
    let reuse = AgentKey {
        id: "agk_new".to_owned(),
        ..agent("one", 'c', AgentScope::AllOrgs, 10)
    };
    assert!(!store.insert_agent_key(&reuse).await.unwrap());
}

pub(super) async fn touching_an_agent_key_never_moves_last_use_back(store: Arc<dyn Store>) {
    let one = agent("one", 'a', AgentScope::AllOrgs, 1);
    store.insert_agent_key(&one).await.unwrap();
    store.touch_agent_key(&one.id, at(10)).await.unwrap();
    store.touch_agent_key(&one.id, at(4)).await.unwrap();
    store.touch_agent_key("agk_missing", at(20)).await.unwrap();
    let found = store
        .agent_key_by_hash(&one.key_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.last_used_at, Some(at(10)));
    store.touch_agent_key(&one.id, at(12)).await.unwrap();
    let found = store
        .agent_key_by_hash(&one.key_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.last_used_at, Some(at(12)));
}
