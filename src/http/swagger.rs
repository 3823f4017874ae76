//! `/swagger.json`: the OpenAPI 2 document MySQL Router assembles from the REST plugins
//! that are loaded. The parts are the interface descriptions MySQL Router 9.7.4 serves
//! (kept as JSON beside this file); they are merged in its plugin order (router, then
//! routing), so the document is byte for byte the one its clients already parse.

use serde_json::{Map, Value};

const BASE: &str = include_str!("swagger/base.json");
const ROUTER: &str = include_str!("swagger/router.json");
const ROUTING: &str = include_str!("swagger/routing.json");

fn merge_into(doc: &mut Map<String, Value>, part: &str) {
    let Ok(Value::Object(part)) = serde_json::from_str::<Value>(part) else {
        return;
    };
    for (k, v) in part {
        match (doc.get_mut(&k), v) {
            (Some(Value::Array(have)), Value::Array(add)) => have.extend(add),
            (Some(Value::Object(have)), Value::Object(add)) => have.extend(add),
            (_, v) => {
                doc.insert(k, v);
            }
        }
    }
}

/// The document for the given set of REST plugins.
pub fn document(router: bool, routing: bool) -> String {
    let mut doc = match serde_json::from_str::<Value>(BASE) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if router {
        merge_into(&mut doc, ROUTER);
    }
    if routing {
        merge_into(&mut doc, ROUTING);
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parts_merge_in_plugin_order() {
        let d = super::document(false, false);
        assert_eq!(
            d,
            r#"{"swagger":"2.0","info":{"title":"MySQL Router","description":"API of MySQL Router","version":"20190715"},"basePath":"/api/20190715","tags":[],"paths":{},"definitions":{}}"#
        );
        let full = super::document(true, true);
        assert_eq!(
            full.len(),
            6058,
            "MySQL Router 9.7.4's size for router + routing"
        );
        assert!(full.contains(r#""tags":[{"name":"app","description":"Application"},{"name":"routes","description":"Routes"}]"#));
    }
}
