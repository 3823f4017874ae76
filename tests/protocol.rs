//! The classic-protocol response tracker against a real server: a watching proxy (in
//! this test) sits between mysql_async and a private MariaDB, forwards every byte
//! unchanged and feeds them to `protocol::exchange::Exchange`. A client sends its next
//! command only after it has the whole response, so the exchange must be at a safe
//! point exactly then, never see server bytes after it said a response ended, and
//! report the transaction state the server reports.

mod common;

use mysql_async::prelude::*;
use mysqlrouter::config::Protocol;
use mysqlrouter::protocol::caps;
use mysqlrouter::protocol::exchange::Exchange;
use mysqlrouter::protocol::handshake::{Tracker, Verdict};
use mysqlrouter::protocol::response::Outcome;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn server() -> &'static common::MariaDb {
    static S: OnceLock<common::MariaDb> = OnceLock::new();
    S.get_or_init(|| common::MariaDb::start_with(&["--max-allowed-packet=64M".to_string()]))
}

/// What the watching proxy saw of one client session.
#[derive(Default)]
struct Watch {
    handshake: Option<Tracker>,
    server_raw: Vec<u8>,
    client_raw: Vec<u8>,
    exchange: Option<Exchange>,
    /// Everything that contradicts the exchange's view.
    violations: Vec<String>,
}

impl Watch {
    fn saw_client(&mut self, data: &[u8]) {
        if let Some(ex) = self.exchange.as_mut() {
            if !ex.client_may_send() {
                self.violations.push(format!(
                    "client sent while a response was open (after {} commands): {:?}",
                    ex.commands(),
                    ex
                ));
            }
            if let Err(e) = ex.on_client(data) {
                self.violations.push(format!("client: {e}"));
            }
            return;
        }
        self.client_raw.extend_from_slice(data);
        if let Some(hs) = self.handshake.as_mut() {
            hs.on_client(data);
        }
    }

    fn saw_server(&mut self, data: &[u8]) {
        if let Some(ex) = self.exchange.as_mut() {
            if ex.at_safe_point() {
                self.violations.push(format!(
                    "{} server bytes after the response ended (command {})",
                    data.len(),
                    ex.commands()
                ));
            }
            if let Err(e) = ex.on_server(data) {
                self.violations.push(format!("server: {e}"));
            }
            return;
        }
        self.server_raw.extend_from_slice(data);
        let hs = self
            .handshake
            .get_or_insert_with(|| Tracker::new(Protocol::Classic));
        if hs.on_server(data) == Verdict::Complete {
            let payload = |raw: &[u8]| raw.get(4..).unwrap_or_default().to_vec();
            let g = caps::from_greeting(&payload(&self.server_raw)).expect("greeting");
            let r = caps::from_response(&payload(&self.client_raw)).expect("response");
            self.exchange = Some(Exchange::new(caps::negotiated(g, r), 0x0002));
        }
    }
}

/// Accepts one client on a free port, connects it to the server and watches.
async fn watching_proxy(upstream: u16) -> (u16, Arc<Mutex<Watch>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let watch = Arc::new(Mutex::new(Watch::default()));
    let w = watch.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let w2 = w.clone();
        let up = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = cr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                w2.lock().unwrap().saw_client(&buf[..n]);
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = sw.shutdown().await;
        });
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            w.lock().unwrap().saw_server(&buf[..n]);
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = up.await;
    });
    (port, watch)
}

fn opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::from_opts(common::opts(port))
        .max_allowed_packet(Some(64 << 20))
        .into()
}

fn in_trx(w: &Arc<Mutex<Watch>>) -> bool {
    w.lock()
        .unwrap()
        .exchange
        .as_ref()
        .unwrap()
        .in_transaction()
}

fn last(w: &Arc<Mutex<Watch>>) -> Option<Outcome> {
    w.lock().unwrap().exchange.as_ref().unwrap().last_outcome()
}

#[test]
fn response_ends_and_transactions_follow_a_real_server() {
    let db = server();
    common::rt().block_on(async {
        let (port, watch) = watching_proxy(db.port).await;
        let mut c = mysql_async::Conn::new(opts(port)).await.unwrap();

        // Plain results, a NULL first field, an error.
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        let null: Option<Option<i64>> = c.query_first("SELECT NULL").await.unwrap();
        assert_eq!(null, Some(None));
        assert!(c.query_drop("SELEC 1").await.is_err());
        assert_eq!(last(&watch), Some(Outcome::Err));

        // More than 256 packets (sequence ids wrap) and a 3 MB value.
        let rows: Vec<u64> = c.query("SELECT seq FROM mysql.seq_1_to_600").await.unwrap();
        assert_eq!(rows.len(), 600);
        let big: Option<String> = c.query_first("SELECT REPEAT('x', 3000000)").await.unwrap();
        assert_eq!(big.map(|s| s.len()), Some(3_000_000));
        // A value of more than 16 MiB: one row spread over two packets, first field
        // length-prefixed with 0xFE.
        let huge: Option<Vec<u8>> = c.query_first("SELECT REPEAT('z', 20000000)").await.unwrap();
        assert_eq!(huge.map(|s| s.len()), Some(20_000_000));

        // Multi-statements and a procedure with two result sets.
        let mut r = c.query_iter("SELECT 1; DO 1; SELECT 2, 3").await.unwrap();
        let a: Vec<i64> = r.collect().await.unwrap();
        let b: Vec<i64> = r.collect().await.unwrap();
        let d: Vec<(i64, i64)> = r.collect().await.unwrap();
        drop(r);
        assert_eq!((a, b, d), (vec![1], vec![], vec![(2, 3)]));
        c.query_drop("CREATE DATABASE IF NOT EXISTS proto")
            .await
            .unwrap();
        c.query_drop("DROP PROCEDURE IF EXISTS proto.two")
            .await
            .unwrap();
        c.query_drop("CREATE PROCEDURE proto.two() BEGIN SELECT 1; SELECT 2, 'b'; END")
            .await
            .unwrap();
        let mut r = c.query_iter("CALL proto.two()").await.unwrap();
        let x: Vec<i64> = r.collect().await.unwrap();
        let y: Vec<(i64, String)> = r.collect().await.unwrap();
        drop(r);
        assert_eq!((x, y), (vec![1], vec![(2, "b".to_string())]));

        // Transactions: the server's IN_TRANS flag, after BEGIN and after COMMIT.
        c.query_drop("CREATE TABLE IF NOT EXISTS proto.t (a INT)")
            .await
            .unwrap();
        assert!(!in_trx(&watch));
        c.query_drop("BEGIN").await.unwrap();
        assert!(in_trx(&watch));
        c.query_drop("INSERT INTO proto.t VALUES (1)")
            .await
            .unwrap();
        assert!(in_trx(&watch));
        c.query_drop("COMMIT").await.unwrap();
        assert!(!in_trx(&watch));
        c.query_drop("SET autocommit = 0").await.unwrap();
        c.query_drop("INSERT INTO proto.t VALUES (2)")
            .await
            .unwrap();
        assert!(
            in_trx(&watch),
            "an implicit transaction under autocommit = 0"
        );
        c.query_drop("ROLLBACK").await.unwrap();
        c.query_drop("SET autocommit = 1").await.unwrap();
        assert!(!in_trx(&watch));

        // Prepared statements: prepare, binary rows, close (which has no response).
        let stmt = c
            .prep("SELECT ?, a FROM proto.t WHERE a > ?")
            .await
            .unwrap();
        match last(&watch) {
            Some(Outcome::Prepared {
                columns, params, ..
            }) => assert_eq!((columns, params), (2, 2)),
            o => panic!("prepare outcome {o:?}"),
        }
        let rows: Vec<(String, i64)> = c.exec(&stmt, ("p", 0)).await.unwrap();
        assert_eq!(rows, vec![("p".to_string(), 1)]);
        c.close(stmt).await.unwrap();
        c.ping().await.unwrap();

        // Reset and change-user exchanges.
        c.reset().await.unwrap();
        c.change_user(Default::default()).await.unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));

        c.disconnect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let w = watch.lock().unwrap();
        assert_eq!(w.violations, Vec::<String>::new());
        let ex = w.exchange.as_ref().unwrap();
        assert!(ex.commands() >= 27, "{} commands seen", ex.commands());
        assert!(!ex.server_spoke_unasked());
    });
}
