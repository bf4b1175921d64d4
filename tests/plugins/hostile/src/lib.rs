//! A plugin that attacks its sandbox. `lookup-bill` does what the `mode`
//! setting says; each attack has a positive control beside it, so a test
//! cannot pass because the attack was never really made.

use ledgerbridge_sdk::http::{HttpError, Request};
use ledgerbridge_sdk::*;

mod outbound;
mod resources;

struct Hostile;

fn found(id: String) -> Result<Option<Entry>, ConnectorError> {
    Ok(Some(Entry {
        id,
        version: None,
        state: EntryState::Open,
        total: None,
    }))
}

impl Connector for Hostile {
    fn describe() -> Descriptor {
        Descriptor {
            name: "hostile".into(),
            version: "0.1.0".into(),
            capabilities: Capabilities::CHECK_NUMBERS_IN_USE,
            settings: vec![SettingSpec {
                name: "mode".into(),
                description: "which attack lookup-bill makes".into(),
                required: true,
            }, SettingSpec {
                // The attacks' own knobs (count, target-url, mib, ...).
                name: "*".into(),
                description: "what the attack named by mode needs".into(),
                required: false,
            }],
            limits: Limits {
                // One ERP request per item, and no batch endpoint: one item a call.
                lookups_per_call: 1,
                creates_per_call: 1,
                updates_per_call: 1,
                ..Limits::default()
            },
        }
    }

    /// Modes `too-few-results` and `too-many-results` lie about the
    /// batch: one result short, or one more than the items.
    fn lookup_bills(ctx: &Context, items: &[BillLookup]) -> Results<Option<Entry>> {
        let one = || found("counted".into());
        match ctx.setting("mode") {
            Some("too-few-results") => Ok(items.iter().skip(1).map(|_| one()).collect()),
            Some("too-many-results") => Ok(items.iter().chain(items.first()).map(|_| one()).collect()),
            _ => Ok(items
                .iter()
                .map(|i| Self::lookup_bill(&ctx.for_item(&i.key), &i.bill, i.known_id.as_deref()))
                .collect()),
        }
    }

    fn lookup_bill(
        ctx: &Context,
        _bill: &Bill,
        _known: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        if let Some(answer) = resources::attack(ctx, ctx.require_setting("mode")?) {
            return answer;
        }
        match ctx.require_setting("mode")? {
            "ok" => found("fine".into()),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => {
                let mib: usize = ctx
                    .setting("mib")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(4096);
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                for _ in 0..mib {
                    hoard.push(vec![1u8; 1 << 20]);
                }
                found(format!("hoarded {} MiB", hoard.len()))
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            "read-outside" => {
                // Control: the granted file must be readable.
                let inside = std::fs::read_to_string("/data/inside.txt").map_err(|e| {
                    ConnectorError::validation(
                        "control",
                        format!("cannot read the granted file: {e}"),
                    )
                })?;
                let mut leaked = Vec::new();
                for path in [
                    "/etc/passwd",
                    "/data/../etc/passwd",
                    "../../../../etc/passwd",
                    "/proc/self/environ",
                    "/",
                ] {
                    if let Ok(text) = std::fs::read_to_string(path) {
                        leaked.push(format!("{path}: {} bytes", text.len()));
                    }
                    if let Ok(dir) = std::fs::read_dir(path) {
                        leaked.push(format!("{path}: listed {} entries", dir.count()));
                    }
                }
                if leaked.is_empty() {
                    Err(ConnectorError::validation(
                        "read-outside",
                        format!("inside read `{}`; every outside path denied", inside.trim()),
                    ))
                } else {
                    found(format!("LEAKED {}", leaked.join("; ")))
                }
            }
            "write-outside" => {
                std::fs::write("/data/written-inside.txt", "ok").map_err(|e| {
                    ConnectorError::validation("control", format!("cannot write inside: {e}"))
                })?;
                match std::fs::write("/tmp/ledgerbridge-hostile-was-here", "x") {
                    Ok(()) => found("LEAKED wrote /tmp".into()),
                    Err(e) => Err(ConnectorError::validation("write-outside", e.to_string())),
                }
            }
            "http" => {
                let url = ctx.require_setting("target-url")?;
                let response = Request::get(url).header("x-plugin", "hostile").send()?;
                found(format!("status {}", response.status))
            }
            "socket" => {
                let addr = ctx.require_setting("target-addr")?;
                match std::net::TcpStream::connect(addr) {
                    Ok(_) => found(format!("LEAKED connected to {addr}")),
                    Err(e) => Err(ConnectorError::validation("socket", e.to_string())),
                }
            }
            "credentials" => {
                // Try to set the credential header ourselves: the host reserves it.
                let own = Request::get(ctx.require_setting("target-url")?)
                    .header("authorization", "Bearer plugin-made-this")
                    .send();
                match &own {
                    Err(HttpError::Denied(m)) => {
                        log::info(format!("setting authorization refused: {m}"))
                    }
                    other => {
                        log::error(format!("setting authorization was not refused: {other:?}"))
                    }
                }
                let request =
                    Request::get(ctx.require_setting("target-url")?).header("x-plugin", "hostile");
                log::info(format!("my request: {request:?}"));
                let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                log::info(format!(
                    "env: {env:?} args: {:?}",
                    std::env::args().collect::<Vec<_>>()
                ));
                log::info(format!("settings: {:?}", ctx.settings));
                let response = request.send()?;
                log::info(format!(
                    "response: {} {:?} {}",
                    response.status,
                    response.headers,
                    response.text_lossy(1000)
                ));
                found(format!(
                    "env={} args={}",
                    env.len(),
                    std::env::args().count()
                ))
            }
            "flood" => {
                for i in 0..20_000 {
                    log::info(format!("log line {i} {}", "x".repeat(100)));
                }
                let chunk = "y".repeat(1000);
                for _ in 0..10_000 {
                    println!("{chunk}");
                }
                found("flooded".into())
            }
            other => outbound::lookup_bill(ctx, other).unwrap_or_else(|| {
                Err(ConnectorError::validation(
                    "settings.mode",
                    format!("unknown mode `{other}`"),
                ))
            }),
        }
    }

    fn create_bill(_: &Context, _: &Bill) -> Result<Entry, ConnectorError> {
        Err(ConnectorError::validation(
            "bill",
            "the hostile plugin creates nothing",
        ))
    }

    fn update_bill(_: &Context, _: &Entry, _: &Bill) -> Result<Entry, ConnectorError> {
        Err(ConnectorError::validation(
            "bill",
            "the hostile plugin updates nothing",
        ))
    }

    fn check_numbers_in_use(
        ctx: &Context,
        _bank_account: &str,
        first: u64,
        count: u32,
    ) -> Result<Vec<u64>, ConnectorError> {
        Ok(outbound::check_numbers_in_use(ctx, first, count))
    }
}

export_connector!(Hostile);
