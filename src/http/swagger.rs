//! `/swagger.json`: the OpenAPI 2 document MySQL Router assembles from the REST plugins
//! that are loaded. The parts are the interface descriptions MySQL Router 9.7.4 serves
//! (kept as JSON beside this file); they are merged in its plugin order (connection
//! pool, router, then routing), so the document is byte for byte the one its clients already parse.

use serde_json::{Map, Value};

const BASE: &str = include_str!("swagger/base.json");
const CONNECTION_POOL: &str = include_str!("swagger/connection_pool.json");
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

/// The REST plugins that add to the document.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plugins {
    pub connection_pool: bool,
    pub router: bool,
    pub routing: bool,
}

/// The document for the given set of REST plugins.
pub fn document(plugins: Plugins) -> String {
    let Plugins {
        connection_pool,
        router,
        routing,
    } = plugins;
    let mut doc = match serde_json::from_str::<Value>(BASE) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if connection_pool {
        merge_into(&mut doc, CONNECTION_POOL);
    }
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
    use super::{document, Plugins};

    const ORACLE_POOL: &str =
        include_str!("../../tests/fixtures/oracle-rest/swagger-connection_pool-9.7.4.json");
    const ORACLE_ALL: &str =
        include_str!("../../tests/fixtures/oracle-rest/swagger-all-9.7.4.json");

    #[test]
    fn byte_identical_to_mysql_router_with_the_connection_pool() {
        let pool = Plugins {
            connection_pool: true,
            ..Default::default()
        };
        assert_eq!(document(pool), ORACLE_POOL);
        let all = Plugins {
            connection_pool: true,
            router: true,
            routing: true,
        };
        assert_eq!(document(all), ORACLE_ALL);
    }

    #[test]
    fn parts_merge_in_plugin_order() {
        let d = document(Plugins::default());
        assert_eq!(
            d,
            r#"{"swagger":"2.0","info":{"title":"MySQL Router","description":"API of MySQL Router","version":"20190715"},"basePath":"/api/20190715","tags":[],"paths":{},"definitions":{}}"#
        );
        let full = document(Plugins {
            router: true,
            routing: true,
            ..Default::default()
        });
        assert_eq!(
            full.len(),
            6058,
            "MySQL Router 9.7.4's size for router + routing"
        );
        assert!(full.contains(r#""tags":[{"name":"app","description":"Application"},{"name":"routes","description":"Routes"}]"#));
    }
}
