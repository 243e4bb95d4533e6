//! The comparison the federation has to win: the same reports (5 orgs ×
//! N, 30 days) in one central PostgreSQL table with covering indexes,
//! answering the same picture with SQL aggregates, against the five nodes
//! answering it, in one run.
//!
//! The SQL does what the federation does: per (hour, category, 250 m cell) the
//! sum over orgs of each org's count where that count reaches k = 3, the orgs
//! that contributed, and the severity sum; and the hour-of-day and hour-of-week
//! totals over the window's whole local months at 1000 m cells, each org's
//! (month, slot, category, cell) thresholded alike. The three statements go out
//! together on one connection. The central table holds what a central database
//! would: the exact position and the text too.
//!
//! Needs PostgreSQL's server programs (`initdb`, `postgres`) on the PATH or in
//! `/usr/lib/postgresql/*/bin`; the bench starts its own server in a temporary
//! folder, on loopback.

use crate::picture::{loaded_federation, ms, picture_request, warm_picture, MEMBERS};
use anyhow::{bail, Context, Result};
use futures::SinkExt;
use lagesbild_geo::{Cell, CellSize};
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_reports::synthetic;
use lagesbild_reports::validate::{validate_batch, Coverage, Rules};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A PostgreSQL server of the bench's own, stopped when dropped.
struct Postgres {
    _dir: tempfile::TempDir,
    server: Child,
    port: u16,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn postgres_program(name: &str) -> Result<PathBuf> {
    if let Ok(path) = which(name) {
        return Ok(path);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().with_context(|| {
        format!("{name} not found: install PostgreSQL's server (Debian: postgresql)")
    })
}

fn which(name: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .context("not on PATH")
}

async fn start_postgres() -> Result<Postgres> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    // The server refuses to run as root; run it as its usual user then.
    let as_user = |program: PathBuf| {
        let mut command = if nix_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.stdin(Stdio::null());
        command
    };
    if nix_is_root() {
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()?;
    }
    let out = as_user(postgres_program("initdb")?)
        .args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
        .output()?;
    if !out.status.success() {
        bail!("initdb: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let server = as_user(postgres_program("postgres")?)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-k", &dir.path().display().to_string()])
        .args([
            "-c",
            "shared_buffers=2GB",
            "-c",
            "work_mem=256MB",
            "-c",
            "max_parallel_workers_per_gather=2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let postgres = Postgres {
        _dir: dir,
        server,
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while connect(port).await.is_err() {
        if Instant::now() > deadline {
            bail!("PostgreSQL did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(postgres)
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

async fn connect(port: u16) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `YYYY-MM-DD HH:MM:SS+00` of a Unix time.
fn timestamp(seconds: i64) -> String {
    let (y, m, d) = lagesbild_privacy::calendar::civil_from_days(seconds.div_euclid(86_400));
    let s = seconds.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

fn copy_text(value: &str) -> String {
    value.replace('\\', "\\\\").replace(['\t', '\n', '\r'], " ")
}

/// Loads the same reports the nodes hold into one table, with its indexes.
async fn load_central(pg: &tokio_postgres::Client, reports: usize, end: SystemTime) -> Result<()> {
    pg.batch_execute(
        "CREATE TABLE reports (
            org text NOT NULL, id text NOT NULL, observed_at timestamptz NOT NULL,
            hour integer NOT NULL, category smallint NOT NULL, severity smallint NOT NULL,
            lat double precision NOT NULL, lon double precision NOT NULL,
            cell_e integer NOT NULL, cell_n integer NOT NULL,
            cell1000_e integer NOT NULL, cell1000_n integer NOT NULL,
            text text NOT NULL)",
    )
    .await?;
    let rules = Rules {
        coverage: Coverage::STOCKHOLM_INNER_CITY,
        retention: Duration::from_secs(60 * 86_400),
    };
    for (seed, org) in MEMBERS.iter().enumerate() {
        eprintln!("loading {reports} reports of {org} into PostgreSQL ...");
        let mut all = synthetic::generate(org, seed as u64, reports, 30, end);
        for (i, r) in all.iter_mut().enumerate() {
            r.id = format!("bench-{i}");
        }
        let sink = pg.copy_in("COPY reports FROM STDIN").await?;
        futures::pin_mut!(sink);
        for chunk in all.chunks(10_000) {
            let ready = validate_batch(chunk, &rules, end, 0)
                .map_err(|v| anyhow::anyhow!("synthetic reports invalid: {:?}", v.first()))?;
            let mut text = String::with_capacity(chunk.len() * 160);
            for (report, new) in chunk.iter().zip(&ready) {
                let position = report.position.unwrap_or_default();
                let km = Cell::containing(position.lat, position.lon, CellSize::M1000)
                    .context("off grid")?;
                text.push_str(&format!(
                    "{org}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    copy_text(&report.id),
                    timestamp(report.observed_at.map_or(0, |t| t.seconds)),
                    new.hour,
                    new.category,
                    new.severity,
                    position.lat,
                    position.lon,
                    new.cell250.easting,
                    new.cell250.northing,
                    km.easting,
                    km.northing,
                    copy_text(&report.text),
                ));
            }
            sink.send(bytes::Bytes::from(text)).await?;
        }
        sink.finish().await?;
    }
    eprintln!("indexing and analysing ...");
    pg.batch_execute(
        "CREATE INDEX reports_by_hour ON reports (hour) INCLUDE (category, cell_e, cell_n, org, severity);
         CREATE INDEX reports_by_time ON reports (observed_at) INCLUDE (category, cell1000_e, cell1000_n, org)",
    )
    .await?;
    // So that the planner knows the table and index-only scans see all-visible pages.
    pg.batch_execute("VACUUM ANALYZE reports").await?;
    Ok(())
}

const CELLS: &str = "WITH per_org AS (
    SELECT hour, category, cell_e, cell_n, org, count(*) AS n, sum(severity) AS s
    FROM reports WHERE hour >= $1 AND hour < $2
    GROUP BY hour, category, cell_e, cell_n, org HAVING count(*) >= 3)
  SELECT hour, category, cell_e, cell_n, sum(n)::bigint, sum(s)::bigint, array_agg(org)
  FROM per_org GROUP BY hour, category, cell_e, cell_n";

const HOUR_OF_DAY: &str = "WITH per AS (
    SELECT org, date_trunc('month', observed_at AT TIME ZONE 'Europe/Stockholm') AS month,
      extract(hour FROM observed_at AT TIME ZONE 'Europe/Stockholm')::int AS slot,
      category, cell1000_e, cell1000_n, count(*) AS n
    FROM reports WHERE observed_at >= $1 AND observed_at < $2
    GROUP BY 1, 2, 3, 4, 5, 6 HAVING count(*) >= 3)
  SELECT slot, sum(n)::bigint FROM per GROUP BY slot";

const HOUR_OF_WEEK: &str = "WITH per AS (
    SELECT org, date_trunc('month', observed_at AT TIME ZONE 'Europe/Stockholm') AS month,
      ((extract(isodow FROM observed_at AT TIME ZONE 'Europe/Stockholm')::int - 1) * 24
        + extract(hour FROM observed_at AT TIME ZONE 'Europe/Stockholm')::int) AS slot,
      category, cell1000_e, cell1000_n, count(*) AS n
    FROM reports WHERE observed_at >= $1 AND observed_at < $2
    GROUP BY 1, 2, 3, 4, 5, 6 HAVING count(*) >= 3)
  SELECT slot, sum(n)::bigint FROM per GROUP BY slot";

/// The hours the nodes answer for `[now - hours, now)`: widened to whole hours.
fn hour_window(hours: u32, now: i64) -> (i32, i32) {
    let from_hour = ((now - i64::from(hours) * 3600) / 3600) as i32;
    (from_hour, (now / 3600) as i32 + 1)
}

/// The picture of the last `hours` hours from the central table; its number
/// of cells.
async fn central_picture(
    pg: &tokio_postgres::Client,
    statements: &[tokio_postgres::Statement; 3],
    hours: u32,
    now: i64,
) -> Result<usize> {
    let (from_hour, to_hour) = hour_window(hours, now);
    // Profiles cover the window's whole local months, snapped as the nodes snap them.
    let (month_from, month_to) =
        lagesbild_privacy::BucketKind::HourOfDay.snap(from_hour as u32, to_hour as u32);
    let at = |hour: u32| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(hour) * 3600);
    let (from, to) = (at(month_from), at(month_to));
    let hours_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&from_hour, &to_hour];
    let time_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&from, &to];
    let (cells, _, _) = futures::try_join!(
        pg.query(&statements[0], &hours_params),
        pg.query(&statements[1], &time_params),
        pg.query(&statements[2], &time_params),
    )?;
    Ok(cells.len())
}

/// The cells part alone (for how much of the central time the profiles take).
async fn central_cells_only(
    pg: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
    hours: u32,
    now: i64,
) -> Result<usize> {
    let (from_hour, to_hour) = hour_window(hours, now);
    Ok(pg.query(statement, &[&from_hour, &to_hour]).await?.len())
}

pub async fn run(reports: usize, queries: usize, windows: &[u32]) -> Result<()> {
    let end = lagesbild_vocabulary::SystemClock.now();
    let now = end.duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let postgres = start_postgres().await?;
    let pg = connect(postgres.port).await?;
    let loading = Instant::now();
    load_central(&pg, reports, end).await?;
    let central_load = loading.elapsed();
    let loading = Instant::now();
    let federation = loaded_federation(reports, end).await?;
    let federation_load = loading.elapsed();
    let size: i64 = pg
        .query_one("SELECT pg_total_relation_size('reports')", &[])
        .await?
        .get(0);
    println!(
        "central vs federated: 5 orgs x {reports} reports over 30 days, the same reports in both; one picture at a time"
    );
    println!(
        "  loaded: PostgreSQL {:.0} s ({:.0} MB with indexes), five nodes {:.0} s",
        central_load.as_secs_f64(),
        size as f64 / 1e6,
        federation_load.as_secs_f64()
    );
    let statements = [
        pg.prepare(CELLS).await?,
        pg.prepare_typed(
            HOUR_OF_DAY,
            &[
                tokio_postgres::types::Type::TIMESTAMPTZ,
                tokio_postgres::types::Type::TIMESTAMPTZ,
            ],
        )
        .await?,
        pg.prepare_typed(
            HOUR_OF_WEEK,
            &[
                tokio_postgres::types::Type::TIMESTAMPTZ,
                tokio_postgres::types::Type::TIMESTAMPTZ,
            ],
        )
        .await?,
    ];
    let home = MEMBERS[0];
    let mut client =
        PictureServiceClient::new(federation.authed(home, home, &["aggregate:read"])?)
            .max_decoding_message_size(256 << 20);
    for &hours in windows {
        let request = picture_request(hours);
        let first = warm_picture(&mut client, &request).await?;
        let central_cells = central_picture(&pg, &statements, hours, now).await?;
        // Alternate, so both see the machine alike.
        let (mut federated, mut central, mut cells_only) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..queries {
            let started = Instant::now();
            client.picture(request.clone()).await?;
            federated.push(started.elapsed());
            let started = Instant::now();
            central_picture(&pg, &statements, hours, now).await?;
            central.push(started.elapsed());
            let started = Instant::now();
            central_cells_only(&pg, &statements[0], hours, now).await?;
            cells_only.push(started.elapsed());
        }
        federated.sort_unstable();
        central.sort_unstable();
        cells_only.sort_unstable();
        let at = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        println!(
            "  last {hours} h: federation {} cells, p50 {:.2} ms, p99 {:.2} ms; PostgreSQL {central_cells} cells, p50 {:.2} ms, p99 {:.2} ms (its cells alone, without the profiles: p50 {:.2} ms, p99 {:.2} ms); central / federated p50 {:.2}, p99 {:.2}",
            first.cells.len(),
            ms(at(&federated, 0.5)),
            ms(at(&federated, 0.99)),
            ms(at(&central, 0.5)),
            ms(at(&central, 0.99)),
            ms(at(&cells_only, 0.5)),
            ms(at(&cells_only, 0.99)),
            at(&central, 0.5).as_secs_f64() / at(&federated, 0.5).as_secs_f64(),
            at(&central, 0.99).as_secs_f64() / at(&federated, 0.99).as_secs_f64(),
        );
    }
    drop(postgres);
    Ok(())
}
