//! The shared protocol test vectors (`crates/protocol/vectors/`), which the web
//! client's codec tests read too.

use actorchat_protocol::{ClientFrame, ServerFrame, decode_client_frame};
use serde_json::Value;

fn load(file: &str) -> Value {
    let path = format!("{}/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn cases<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    let list = v[key].as_array().expect("array of cases");
    assert!(!list.is_empty(), "no {key} cases");
    list
}

#[test]
fn client_frames_decode_as_documented() {
    let v = load("client_frames.json");
    for case in cases(&v, "valid") {
        let name = &case["name"];
        let raw = case["frame"].to_string();
        let decoded = decode_client_frame(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: ClientFrame = serde_json::from_value(case["decoded"].clone()).unwrap();
        assert_eq!(decoded, expected, "{name}");
    }
    for case in cases(&v, "invalid") {
        let name = &case["name"];
        let raw = case["raw"].as_str().unwrap();
        let err = decode_client_frame(raw).expect_err(raw);
        assert_eq!(
            serde_json::to_value(err.code).unwrap(),
            case["code"],
            "{name}: {err}"
        );
    }
}

#[test]
fn server_frames_roundtrip() {
    let v = load("server_frames.json");
    for case in cases(&v, "valid") {
        let name = &case["name"];
        let frame: ServerFrame =
            serde_json::from_value(case["frame"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let back: Value = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(back, case["frame"], "{name}");
    }
    for case in cases(&v, "invalid") {
        let raw = case["raw"].as_str().unwrap();
        assert!(serde_json::from_str::<ServerFrame>(raw).is_err(), "{raw}");
    }
}
