//! REST API: 401 shapes, versions, SOQL with pagination, records.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{location_params, param, pkce, text, world};

#[tokio::test]
async fn an_invalid_token_gets_salesforces_401_array() {
    let world = world().await;
    let (status, body) = world
        .rest("/services/data/v59.0/limits", "00Dbogus!AQ")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    assert_eq!(world.sim.counters().rest_unauthorized, 1);
}

#[tokio::test]
async fn a_token_without_the_api_scope_is_not_valid_for_rest() {
    let world = world().await;
    let (verifier, challenge) = pkce();
    let response = world
        .authorize_raw(
            &world.sim.production_login_url(),
            &[
                ("login_hint", &world.user.username),
                ("scope", "id refresh_token"),
                ("code_challenge", &challenge),
            ],
        )
        .await;
    let code = param(&location_params(&response), "code")
        .unwrap()
        .to_owned();
    let (status, body) = world.exchange(&code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = world
        .rest("/services/data/v59.0/limits", text(&body, "access_token"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body[0]["message"],
        "This session is not valid for use with the REST API"
    );
    assert_eq!(body[0]["errorCode"], "INVALID_SESSION_ID");
}

#[tokio::test]
async fn a_token_of_another_org_is_refused_at_this_instance() {
    let world = world().await;
    let body = world.tokens().await;
    let other = world
        .sim
        .create_org(sfsim::OrgSpec {
            name: "Globex".to_owned(),
            my_domain: "globex".to_owned(),
            ..sfsim::OrgSpec::default()
        })
        .await
        .unwrap();
    let response = world
        .client
        .get(format!("{}/services/data/v59.0/limits", other.instance_url))
        .bearer_auth(text(&body, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_version_list_includes_recent_versions() {
    let world = world().await;
    let body: Value = world
        .client
        .get(format!("{}/services/data", world.org.instance_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["version"].as_str().unwrap())
        .collect();
    assert!(versions.contains(&"59.0") && versions.contains(&"66.0"));
    assert_eq!(
        body.as_array().unwrap().last().unwrap()["url"],
        "/services/data/v66.0"
    );
}

#[tokio::test]
async fn limits_count_down_daily_api_requests() {
    let world = world().await;
    let access = text(&world.tokens().await, "access_token").to_owned();
    let (_, first) = world.rest("/services/data/v66.0/limits", &access).await;
    let (_, second) = world.rest("/services/data/v66.0/limits", &access).await;
    assert_eq!(
        first["DailyApiRequests"]["Remaining"].as_u64().unwrap() - 1,
        second["DailyApiRequests"]["Remaining"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn a_query_pages_through_next_records_url() {
    let world = world().await;
    let access = text(&world.tokens().await, "access_token").to_owned();
    let mut url = format!(
        "{}/services/data/v59.0/query?q={}",
        world.org.instance_url, "SELECT+Id,+Name+FROM+Account+ORDER+BY+Name"
    );
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let page: Value = world
            .client
            .get(&url)
            .bearer_auth(&access)
            .header("Sforce-Query-Options", "batchSize=3")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        assert_eq!(page["totalSize"], 7);
        for record in page["records"].as_array().unwrap() {
            assert_eq!(record["attributes"]["type"], "Account");
            assert!(record["Id"].as_str().unwrap().starts_with("001"));
            names.push(record["Name"].as_str().unwrap().to_owned());
        }
        match page.get("nextRecordsUrl").and_then(Value::as_str) {
            Some(next) => {
                assert!(next.starts_with("/services/data/v59.0/query/01g"));
                assert_eq!(page["done"], false);
                url = format!("{}{next}", world.org.instance_url);
            }
            None => {
                assert_eq!(page["done"], true);
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 7);
    let mut sorted = names.clone();
    sorted.sort_by_key(|name| name.to_lowercase());
    assert_eq!(names, sorted);
}

#[tokio::test]
async fn count_where_and_malformed_queries_behave_like_salesforce() {
    let world = world().await;
    let access = text(&world.tokens().await, "access_token").to_owned();
    let query = |soql: &str| {
        format!(
            "/services/data/v59.0/query?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("q", soql)
                .finish()
        )
    };
    let (_, count) = world
        .rest(&query("SELECT COUNT() FROM Contact"), &access)
        .await;
    assert_eq!(count["totalSize"], 14);
    let (_, acme) = world
        .rest(
            &query("SELECT Id FROM Account WHERE Name = 'acme corporation'"),
            &access,
        )
        .await;
    assert_eq!(acme["totalSize"], 1);
    let account_id = acme["records"][0]["Id"].as_str().unwrap().to_owned();
    let (_, contacts) = world
        .rest(
            &query(&format!(
                "SELECT FirstName, Email FROM Contact WHERE AccountId = '{account_id}' LIMIT 1"
            )),
            &access,
        )
        .await;
    assert_eq!(contacts["records"].as_array().unwrap().len(), 1);
    let (status, bad) = world.rest(&query("SELECT FROM"), &access).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad[0]["errorCode"], "MALFORMED_QUERY");
}

#[tokio::test]
async fn records_can_be_created_read_updated_and_deleted() {
    let world = world().await;
    let access = text(&world.tokens().await, "access_token").to_owned();
    let base = format!(
        "{}/services/data/v59.0/sobjects/Account",
        world.org.instance_url
    );
    let created: Value = world
        .client
        .post(&base)
        .bearer_auth(&access)
        .json(&json!({"Name": "Cyberdyne", "Industry": "Technology"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["success"], true);
    let id = created["id"].as_str().unwrap().to_owned();
    let patched = world
        .client
        .patch(format!("{base}/{id}"))
        .bearer_auth(&access)
        .json(&json!({"Industry": "Defense"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    let (status, record) = world
        .rest(
            &format!("/services/data/v59.0/sobjects/Account/{id}"),
            &access,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["Industry"], "Defense");
    assert_eq!(
        record["attributes"]["url"],
        format!("/services/data/v59.0/sobjects/Account/{id}")
    );
    let deleted = world
        .client
        .delete(format!("{base}/{id}"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, body) = world
        .rest(
            &format!("/services/data/v59.0/sobjects/Account/{id}"),
            &access,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body[0]["errorCode"], "NOT_FOUND");
}

#[tokio::test]
async fn every_request_is_recorded_with_its_headers() {
    let world = world().await;
    let access = text(&world.tokens().await, "access_token").to_owned();
    world.rest("/services/data/v59.0/limits", &access).await;
    let recorded = world.sim.requests();
    let last = recorded.last().unwrap();
    assert_eq!(last.host, world.org.instance_url);
    assert_eq!(last.path_and_query, "/services/data/v59.0/limits");
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {access}").as_str())
    );
    assert!(last.peer.ip().is_loopback());
}
