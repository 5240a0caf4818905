//! Self-tests of the loopback fake Graph.

use std::time::Duration;

use chrono::{SubsecRound as _, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::support::fake_graph::{
    ALICE, ALICE_UPN, BOB, CAROL, CLIENT_ID, CLIENT_SECRET, FakeGraph, JWT_BEARER, Options,
    Published, http_client, test_cert_thumbprint_s256, test_private_key_pem,
};

async fn start() -> (FakeGraph, reqwest::Client) {
    (FakeGraph::start(Options::default()).await, http_client())
}

async fn token_form(
    fake: &FakeGraph,
    client: &reqwest::Client,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let r = client
        .post(fake.token_url())
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn secret_token(fake: &FakeGraph, client: &reqwest::Client) -> String {
    let scope = fake.scope();
    let (status, body) = token_form(
        fake,
        client,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("scope", &scope),
            ("client_secret", CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

fn assertion(alg: Algorithm, aud: &str, nbf: i64, exp: i64, jti: &str) -> String {
    let mut header = Header::new(alg);
    header.x5t_s256 = Some(test_cert_thumbprint_s256());
    let claims = json!({
        "aud": aud, "iss": CLIENT_ID, "sub": CLIENT_ID,
        "jti": jti, "nbf": nbf, "iat": nbf, "exp": exp,
    });
    let key = EncodingKey::from_rsa_pem(test_private_key_pem().as_bytes()).unwrap();
    encode(&header, &claims, &key).unwrap()
}

async fn post_json(
    client: &reqwest::Client,
    url: String,
    token: &str,
    body: &Value,
) -> (u16, Option<Value>, reqwest::header::HeaderMap) {
    let r = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    let body = (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap());
    (status, body, headers)
}

fn set_url(fake: &FakeGraph, user: &str) -> String {
    format!("{}/v1.0/users/{user}/presence/setStatusMessage", fake.url())
}

fn status_body(content: &str, expiry: Option<&str>) -> Value {
    let mut sm = json!({"message": {"content": content, "contentType": "text"}});
    if let Some(e) = expiry {
        sm["expiryDateTime"] = json!({"dateTime": e, "timeZone": "UTC"});
    }
    json!({ "statusMessage": sm })
}

fn error_code(body: &Option<Value>) -> &str {
    body.as_ref().unwrap()["error"]["code"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_by_secret_and_wrong_secret_error_shape() {
    let (fake, client) = start().await;
    let scope = fake.scope();
    let (status, body) = token_form(
        &fake,
        &client,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("scope", &scope),
            ("client_secret", CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(!body["access_token"].as_str().unwrap().is_empty());

    let (status, body) = token_form(
        &fake,
        &client,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("scope", &scope),
            ("client_secret", "nope"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215: Invalid client secret provided")
    );
    assert_eq!(body["error_codes"], json!([7000215]));
    assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());

    // Wrong scope: the URL requests are sent to (a proxy) is not a resource
    // Entra knows; the scope must be the cloud's Graph resource.
    let proxy_scope = format!("{}/.default", fake.url());
    let (status, body) = token_form(
        &fake,
        &client,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("scope", &proxy_scope),
            ("client_secret", CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_resource"))
    );
    let r = client
        .post(format!("{}/other-tenant/oauth2/v2.0/token", fake.url()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002")
    );

    assert_eq!(fake.token_requests(), 4);
    let rec = fake.requests();
    assert_eq!(rec[0].body.as_ref().unwrap()["client_secret"], "<redacted>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_by_assertion_accepted_and_rejected() {
    let (fake, client) = start().await;
    let scope = fake.scope();
    let now = Utc::now().timestamp();
    let form = |jwt: &str| {
        vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", CLIENT_ID.to_string()),
            ("scope", scope.clone()),
            ("client_assertion_type", JWT_BEARER.to_string()),
            ("client_assertion", jwt.to_string()),
        ]
    };
    let send = |jwt: String| {
        let req = client.post(fake.token_url()).form(&form(&jwt));
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };

    let good = assertion(Algorithm::PS256, &fake.audience(), now, now + 600, "jti-1");
    let (status, body) = send(good.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");

    // Replay of the same jti.
    let (status, body) = send(good).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // RS256 is accepted too.
    let rs = assertion(Algorithm::RS256, &fake.audience(), now, now + 300, "jti-2");
    assert_eq!(send(rs).await.0, 200);

    // Wrong audience: the Graph root, and the URL the request was sent to
    // (a proxy) instead of the cloud's token endpoint.
    for (aud, jti) in [(fake.url(), "jti-3"), (fake.token_url(), "jti-3b")] {
        let wrong_aud = assertion(Algorithm::PS256, &aud, now, now + 600, jti);
        let (status, body) = send(wrong_aud).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }

    // Expired.
    let expired = assertion(
        Algorithm::PS256,
        &fake.audience(),
        now - 900,
        now - 300,
        "jti-4",
    );
    let (status, body) = send(expired).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700024"),
        "{body}"
    );

    // Lifetime over 10 minutes.
    let long = assertion(Algorithm::PS256, &fake.audience(), now, now + 3600, "jti-5");
    assert_eq!(send(long).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_message_is_stored_and_read_without_expiry() {
    let (fake, client) = start().await;
    let token = secret_token(&fake, &client).await;
    let expiry = (Utc::now() + chrono::Duration::hours(1))
        .naive_utc()
        .trunc_subsecs(0);
    // Graph's 7-digit fraction (chrono has no `%.7f`).
    let expiry_s = format!("{}.0000000", expiry.format("%Y-%m-%dT%H:%M:%S"));
    let (status, body, _) = post_json(
        &client,
        set_url(&fake, ALICE),
        &token,
        &status_body("In a meeting", Some(&expiry_s)),
    )
    .await;
    assert_eq!((status, body), (200, None));
    // Bob: expired message (Graph stores it; reads return null).
    fake.set_user_message(BOB, "Old", Some(Utc::now() - chrono::Duration::minutes(1)));
    // Carol: set then cleared.
    let url = set_url(&fake, CAROL);
    assert_eq!(
        post_json(&client, url.clone(), &token, &status_body("x", None))
            .await
            .0,
        200
    );
    assert_eq!(
        post_json(&client, url, &token, &status_body("", None))
            .await
            .0,
        200
    );

    let msgs = fake.messages();
    let alice = msgs[ALICE].clone().unwrap();
    assert_eq!(alice.content, "In a meeting");
    assert!(alice.by_app);
    assert_eq!(alice.expiry.unwrap().naive_utc(), expiry);
    assert_eq!(msgs[CAROL], None);
    assert_eq!(
        msgs[BOB].as_ref().map(|p| p.by_app),
        Some(false),
        "person-set message kept"
    );
    assert_eq!(fake.set_count(), 3);

    let (status, body, _) = post_json(
        &client,
        format!("{}/v1.0/communications/getPresencesByUserId", fake.url()),
        &token,
        &json!({"ids": [ALICE, BOB, CAROL, "00000000-0000-4000-8000-0000000000ff"]}),
    )
    .await;
    assert_eq!(status, 200);
    let value = body.unwrap()["value"].as_array().unwrap().clone();
    assert_eq!(value.len(), 3, "unknown ids are omitted");
    let by_id = |id: &str| value.iter().find(|p| p["id"] == id).unwrap().clone();
    let a = by_id(ALICE);
    assert_eq!(a["statusMessage"]["message"]["content"], "In a meeting");
    assert_eq!(a["statusMessage"]["message"]["contentType"], "text");
    assert!(a["statusMessage"].get("expiryDateTime").is_none());
    assert!(a["statusMessage"]["publishedDateTime"].is_null());
    assert!(
        by_id(BOB)["statusMessage"].is_null(),
        "expired reads as null"
    );
    assert!(by_id(CAROL)["statusMessage"].is_null());

    // A Windows zone name is converted.
    let body = json!({"statusMessage": {
        "message": {"content": "PST", "contentType": "text"},
        "expiryDateTime": {"dateTime": "2030-01-15T09:00:00", "timeZone": "Pacific Standard Time"}}});
    assert_eq!(
        post_json(&client, set_url(&fake, BOB), &token, &body)
            .await
            .0,
        200
    );
    assert_eq!(
        fake.messages()[BOB],
        Some(Published {
            content: "PST".to_string(),
            expiry: Some(crate::support::t("2030-01-15T17:00:00Z")),
            by_app: true,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_set_status_bodies_are_rejected() {
    let (fake, client) = start().await;
    let token = secret_token(&fake, &client).await;
    let url = set_url(&fake, ALICE);
    let bad = [
        status_body("x", Some("2030-01-01T10:00:00Z")),
        status_body("x", Some("2030-01-01T10:00:00+02:00")),
        status_body("x", Some("2030-01-01 10:00:00")),
        json!({"statusMessage": {"message": {"content": "x", "contentType": "html"}}}),
        json!({"statusMessage": {"message": {"content": 5, "contentType": "text"}}}),
        json!({"statusMessage": {"message": {"content": "x", "contentType": "text"}, "extra": 1}}),
        json!({"statusMessage": {"message": {"content": "x", "contentType": "text"}}, "x": 1}),
        json!({"statusMessage": {"message": {"content": "x", "contentType": "text"},
            "expiryDateTime": {"dateTime": "2030-01-01T10:00:00", "timeZone": "Mars/Olympus"}}}),
    ];
    for b in &bad {
        let (status, body, _) = post_json(&client, url.clone(), &token, b).await;
        assert_eq!(status, 400, "{b}");
        assert_eq!(error_code(&body), "BadRequest");
    }
    // No Content-Type → 415.
    let r = client
        .post(url)
        .bearer_auth(&token)
        .body(status_body("x", None).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(fake.set_count(), 0);
    assert_eq!(fake.messages()[ALICE], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_and_expired_tokens_are_refused() {
    let (fake, client) = start().await;
    let r = client
        .post(set_url(&fake, ALICE))
        .json(&status_body("x", None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    let (status, body, _) = post_json(
        &client,
        set_url(&fake, ALICE),
        "made-up",
        &status_body("x", None),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "InvalidAuthenticationToken")
    );

    let token = secret_token(&fake, &client).await;
    let url = set_url(&fake, ALICE);
    assert_eq!(
        post_json(&client, url.clone(), &token, &status_body("a", None))
            .await
            .0,
        200
    );
    fake.expire_all_tokens();
    let (status, body, _) = post_json(&client, url.clone(), &token, &status_body("b", None)).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "InvalidAuthenticationToken")
    );
    let fresh = secret_token(&fake, &client).await;
    assert_eq!(
        post_json(&client, url, &fresh, &status_body("c", None))
            .await
            .0,
        200
    );
    assert_eq!(fake.messages()[ALICE].as_ref().unwrap().content, "c");
    let rec = fake.requests();
    assert!(rec.iter().all(|r| {
        r.headers
            .iter()
            .filter(|(k, _)| k == "authorization")
            .all(|(_, v)| v == "Bearer <redacted>")
    }));
    assert_eq!(fake.http_requests(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upn_on_presence_route_is_rejected_but_resolvable() {
    let (fake, client) = start().await;
    let token = secret_token(&fake, &client).await;
    let (status, body, _) = post_json(
        &client,
        set_url(&fake, ALICE_UPN),
        &token,
        &status_body("x", None),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "BadRequest"));
    let (status, body, _) = post_json(
        &client,
        set_url(&fake, "00000000-0000-4000-8000-0000000000ff"),
        &token,
        &status_body("x", None),
    )
    .await;
    assert_eq!((status, error_code(&body)), (404, "NotFound"));

    let r = client
        .get(format!("{}/v1.0/users/{ALICE_UPN}?$select=id", fake.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], ALICE);
    let r = client
        .get(format!(
            "{}/v1.0/users/nobody@contoso.com?$select=id",
            fake.url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

fn batch_item(id: &str, user: &str, content: &str) -> Value {
    json!({
        "id": id, "method": "POST",
        "url": format!("/users/{user}/presence/setStatusMessage"),
        "headers": {"Content-Type": "application/json"},
        "body": status_body(content, None),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_limits_and_shuffled_per_item_throttling() {
    let (fake, client) = start().await;
    let token = secret_token(&fake, &client).await;
    let batch_url = format!("{}/v1.0/$batch", fake.url());

    let too_many: Vec<Value> = (0..21)
        .map(|i| batch_item(&i.to_string(), ALICE, "x"))
        .collect();
    let (status, body, _) = post_json(
        &client,
        batch_url.clone(),
        &token,
        &json!({ "requests": too_many }),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "BadRequest"));
    let dup = json!({"requests": [batch_item("1", ALICE, "x"), batch_item("1", BOB, "y")]});
    assert_eq!(
        post_json(&client, batch_url.clone(), &token, &dup).await.0,
        400
    );
    assert_eq!(fake.set_count(), 0);

    fake.throttle_next(1, 7);
    let mut reqs = vec![
        batch_item("a", ALICE, "one"),
        batch_item("b", BOB, "two"),
        batch_item("c", CAROL, "three"),
    ];
    // No Content-Type with a body → that item 400.
    let mut no_ct = batch_item("d", ALICE, "four");
    no_ct.as_object_mut().unwrap().remove("headers");
    reqs.push(no_ct);
    // /v1.0 prefix → that item 400.
    let mut prefixed = batch_item("e", ALICE, "five");
    prefixed["url"] = json!(format!("/v1.0/users/{ALICE}/presence/setStatusMessage"));
    reqs.push(prefixed);
    let (status, body, _) =
        post_json(&client, batch_url, &token, &json!({ "requests": reqs })).await;
    assert_eq!(status, 200);
    let responses = body.unwrap()["responses"].as_array().unwrap().clone();
    let ids: Vec<&str> = responses
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    assert_ne!(ids, ["a", "b", "c", "d", "e"], "responses are shuffled");
    let by_id = |id: &str| responses.iter().find(|r| r["id"] == id).unwrap().clone();
    let a = by_id("a");
    assert_eq!(a["status"], 429);
    assert_eq!(a["headers"]["Retry-After"], "7");
    assert_eq!(a["body"]["error"]["code"], "TooManyRequests");
    assert_eq!(by_id("b")["status"], 200);
    assert!(by_id("b").get("body").is_none());
    assert_eq!(by_id("c")["status"], 200);
    assert_eq!(by_id("d")["status"], 400);
    assert_eq!(by_id("e")["status"], 400);

    let msgs = fake.messages();
    assert_eq!(msgs[ALICE], None);
    assert_eq!(msgs[BOB].as_ref().unwrap().content, "two");
    assert_eq!(msgs[CAROL].as_ref().unwrap().content, "three");
    assert_eq!(fake.set_count(), 2);
    // Items a (throttled), b and c count; d and e are rejected before reaching the route.
    assert_eq!(fake.presence_ops_log().len(), 3);
    assert_eq!(fake.http_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_budget_resets_and_unsupported_batch() {
    let opts = Options {
        batch_supported: false,
        ..Options::default()
    };
    let fake = FakeGraph::start(opts).await;
    let client = http_client();
    let token = secret_token(&fake, &client).await;
    let url = set_url(&fake, ALICE);

    fake.fail_next(1, 503);
    let (status, body, _) = post_json(&client, url.clone(), &token, &status_body("x", None)).await;
    assert_eq!((status, error_code(&body)), (503, "ServiceUnavailable"));

    fake.throttle_next(1, 3);
    let (status, _, headers) =
        post_json(&client, url.clone(), &token, &status_body("x", None)).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "3");

    fake.reset_next_connections(1);
    let err = client
        .post(url.clone())
        .bearer_auth(&token)
        .json(&status_body("reset", None))
        .send()
        .await;
    assert!(err.is_err(), "connection reset: {err:?}");
    assert_eq!(
        fake.messages()[ALICE],
        None,
        "a reset request is not processed"
    );
    assert_eq!(fake.requests().last().unwrap().status, 0);

    // Budget: 2 ops already counted (the 503 and the 429; the reset one was never
    // processed); allow 3 in 30 s.
    fake.set_budget(Some(3));
    assert_eq!(
        post_json(&client, url.clone(), &token, &status_body("ok", None))
            .await
            .0,
        200
    );
    let (status, _, headers) =
        post_json(&client, url.clone(), &token, &status_body("no", None)).await;
    assert_eq!(status, 429);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry));
    assert_eq!(fake.messages()[ALICE].as_ref().unwrap().content, "ok");
    assert_eq!(fake.presence_ops_log().len(), 4);
    fake.set_budget(None);

    // Presence inside $batch is refused when batching is unsupported.
    let (status, body, _) = post_json(
        &client,
        format!("{}/v1.0/$batch", fake.url()),
        &token,
        &json!({"requests": [batch_item("1", BOB, "x")]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap()["responses"][0]["status"], 400);
    assert_eq!(fake.messages()[BOB], None);

    // Latency is applied.
    fake.set_latency(Duration::from_millis(50));
    let t0 = std::time::Instant::now();
    assert_eq!(
        post_json(&client, url, &token, &status_body("slow", None))
            .await
            .0,
        200
    );
    assert!(t0.elapsed() >= Duration::from_millis(50));
}
