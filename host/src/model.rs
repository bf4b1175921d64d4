//! The host's own vocabulary: tenants, connections, documents, payments,
//! entries, targets and triggers. One name for one thing, the same in the
//! store, the CLI and the docs.

use serde::{Deserialize, Serialize};

/// Longest id of anything: tenant, connection, document, payment, vendor,
/// funding account, bank id.
pub const MAX_ID_LEN: usize = 128;

/// The one rule for every id (V1): 1 to [`MAX_ID_LEN`] letters, digits and
/// `._:-`, and not `.` or `..` alone. Ids end up in file names, URLs and
/// log lines, so nothing else is allowed.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("longer than {MAX_ID_LEN} characters"));
    }
    if id == "." || id == ".." {
        return Err(format!("`{id}` is not an id"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(format!(
            "`{}` may hold only letters, digits, `.`, `_`, `:` and `-`",
            id.escape_debug()
        ));
    }
    Ok(())
}

/// Text a person typed (names, descriptions, numbers): no control
/// characters (NUL, escape sequences), which would corrupt files, terminals
/// and ERPs; a line break or tab only where `multiline`.
pub fn check_text(text: &str, multiline: bool) -> Result<(), String> {
    // Also the invisible characters that reorder or hide text (bidi
    // overrides and isolates, zero-width characters, line separators, a
    // byte-order mark): they make what a person reads differ from what is.
    let invisible = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}');
    match text
        .chars()
        .find(|&c| (c.is_control() && !(multiline && (c == '\n' || c == '\t'))) || invisible(c))
    {
        Some(c) => Err(format!(
            "holds the control or invisible character U+{:04X}; remove it",
            c as u32
        )),
        None => Ok(()),
    }
}

/// A document's place in the AP product's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    Draft,
    AwaitingApproval,
    /// Approved and unpaid.
    Approved,
    Paid,
}

impl DocumentStatus {
    /// The name used in JSON, SQL and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Draft => "draft",
            DocumentStatus::AwaitingApproval => "awaiting_approval",
            DocumentStatus::Approved => "approved",
            DocumentStatus::Paid => "paid",
        }
    }

    /// Parses [`DocumentStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => DocumentStatus::Draft,
            "awaiting_approval" => DocumentStatus::AwaitingApproval,
            "approved" => DocumentStatus::Approved,
            "paid" => DocumentStatus::Paid,
            _ => return None,
        })
    }

    /// Approved or later: the document belongs in the ERP.
    pub fn is_approved(self) -> bool {
        matches!(self, DocumentStatus::Approved | DocumentStatus::Paid)
    }
}

/// The vendor of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vendor {
    pub id: String,
    pub name: String,
}

/// One line of a document, in the AP product's terms (category and
/// department, which each connection maps to its ERP's codes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentLine {
    pub description: String,
    /// Minor units.
    pub amount: i64,
    pub category: String,
    pub department: Option<String>,
    pub tax_code: Option<String>,
}

/// A vendor bill in the AP product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub tenant_id: String,
    pub id: String,
    /// The vendor's invoice number.
    pub number: String,
    pub vendor: Vendor,
    pub issue_date: String,
    pub due_date: String,
    pub currency: String,
    pub lines: Vec<DocumentLine>,
    /// Minor units.
    pub total: i64,
    pub status: DocumentStatus,
}

impl Document {
    /// The fields whose change updates the bill entry (A2); status is not
    /// one of them (a status change has its own triggers).
    pub fn details_differ(&self, other: &Document) -> bool {
        self.number != other.number
            || self.vendor != other.vendor
            || self.issue_date != other.issue_date
            || self.due_date != other.due_date
            || self.currency != other.currency
            || self.lines != other.lines
            || self.total != other.total
    }
}

/// How a payment is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Check,
    Ach,
    Wire,
    Card,
}

/// Where a payment's disbursement stands (A4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisbursementStatus {
    Initiated,
    /// The money is out: the payment entry is synced at once.
    FundingComplete,
    Failed,
}

/// A payment against a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub tenant_id: String,
    pub id: String,
    pub document_id: String,
    /// Minor units.
    pub amount: i64,
    pub date: String,
    pub method: PaymentMethod,
    /// The funding account the payment is drawn from.
    pub funding_account: String,
    /// The check number; assigned by the host when a check is funded (C1).
    pub check_number: Option<u64>,
    /// The ERP's bank account for this payment, when an operator set it
    /// (L3); otherwise the connection's mapping of the funding account.
    #[serde(default)]
    pub bank_id: Option<String>,
    /// `None`: paid outside the product, synced as soon as recorded.
    #[serde(default)]
    pub disbursement_status: Option<DisbursementStatus>,
}

impl Payment {
    /// A failed disbursement paid nothing: it does not count against the
    /// document's total.
    pub fn never_paid(&self) -> bool {
        self.disbursement_status == Some(DisbursementStatus::Failed)
    }

    /// Whether the payment's entry belongs in the ERP now (A3, A4).
    pub fn ready(&self) -> bool {
        matches!(
            self.disbursement_status,
            None | Some(DisbursementStatus::FundingComplete)
        )
    }
}

/// Which entry of a document a sync is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The document's bill entry.
    Bill,
    /// The document's payment entry.
    Payment,
}

impl Target {
    /// The name used in JSON, SQL and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Bill => "bill",
            Target::Payment => "payment",
        }
    }

    /// Parses [`Target::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bill" => Some(Target::Bill),
            "payment" => Some(Target::Payment),
            _ => None,
        }
    }
}

/// Why a sync happened (L1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Approved,
    Changed,
    Paid,
    FundingComplete,
    Manual,
    Bulk,
    Retry,
}

impl Trigger {
    /// The name used in JSON, SQL and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Approved => "approved",
            Trigger::Changed => "changed",
            Trigger::Paid => "paid",
            Trigger::FundingComplete => "funding_complete",
            Trigger::Manual => "manual",
            Trigger::Bulk => "bulk",
            Trigger::Retry => "retry",
        }
    }

    /// Parses [`Trigger::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "approved" => Trigger::Approved,
            "changed" => Trigger::Changed,
            "paid" => Trigger::Paid,
            "funding_complete" => Trigger::FundingComplete,
            "manual" => Trigger::Manual,
            "bulk" => Trigger::Bulk,
            "retry" => Trigger::Retry,
            _ => return None,
        })
    }
}

/// A tracking option a department maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingMapping {
    pub category: String,
    pub option: String,
}

/// How a connection translates the AP product's codes to its ERP's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mappings {
    /// Category → GL account code.
    pub categories: std::collections::BTreeMap<String, String>,
    /// Department → tracking category and option (Xero) or class (QuickBooks).
    pub departments: std::collections::BTreeMap<String, TrackingMapping>,
    /// Funding account → the ERP's bank account code.
    pub bank_accounts: std::collections::BTreeMap<String, String>,
    /// Vendor id → the ERP's own id for that vendor (Xero's `ContactID`,
    /// QuickBooks' vendor `Id`). A vendor with none is matched by name.
    pub vendors: std::collections::BTreeMap<String, String>,
}

/// Per-connection overrides of the sandbox limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitOverrides {
    /// Memory of one call, in MiB ([`LimitOverrides::MEMORY_MIB`]).
    pub memory_mib: Option<u32>,
    /// Wall time of one call ([`LimitOverrides::DEADLINE_MS`]).
    pub deadline_ms: Option<u64>,
    /// Each HTTP wait of a call ([`LimitOverrides::HTTP_TIMEOUT_MS`]).
    pub http_timeout_ms: Option<u64>,
    /// Bytes of files the granted directory may hold, in MiB
    /// ([`LimitOverrides::DISK_MIB`]).
    pub disk_mib: Option<u64>,
    /// Files and directories the granted directory may hold
    /// ([`LimitOverrides::DISK_FILES`]).
    pub disk_files: Option<u64>,
    /// R2: calls to the ERP in flight at once (Xero: 5, QuickBooks Online:
    /// 10). The connector's descriptor states the ERP's; this may only
    /// lower it. [`LimitOverrides::DEFAULT_CALLS_AT_ONCE`] when neither says.
    pub calls_at_once: Option<u32>,
    /// R2: calls to the ERP in any minute (Xero: 60, QuickBooks Online:
    /// 500). The connector's descriptor states the ERP's; this may only
    /// lower it. No budget when neither says.
    pub calls_per_minute: Option<u32>,
    /// R2: calls to the ERP in any 24 hours (Xero: 5,000). The connector's
    /// descriptor states the ERP's; this may only lower it.
    pub calls_per_day: Option<u32>,
    /// The most items one call carries ([`LimitOverrides::ITEMS_PER_CALL`]):
    /// lowers the connector's own items per call, for every operation.
    pub items_per_call: Option<u32>,
}

impl LimitOverrides {
    /// The memory a connection may give its plugin, in MiB: at least enough
    /// to instantiate a small component, at most the runtime's pool slot.
    pub const MEMORY_MIB: std::ops::RangeInclusive<u32> = 1..=512;
    /// A call's deadline: 10 ms to 10 minutes.
    pub const DEADLINE_MS: std::ops::RangeInclusive<u64> = 10..=600_000;
    /// An HTTP wait: 10 ms to 5 minutes.
    pub const HTTP_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 10..=300_000;
    /// A directory's bytes: 1 MiB to 1 TiB.
    pub const DISK_MIB: std::ops::RangeInclusive<u64> = 1..=1 << 20;
    /// A directory's files: 1 to ten million.
    pub const DISK_FILES: std::ops::RangeInclusive<u64> = 1..=10_000_000;
    /// Calls at once: 1 to 16 (the runtime's bound of a connection's
    /// requests in flight; QuickBooks Online, the most generous, allows 10).
    pub const CALLS_AT_ONCE: std::ops::RangeInclusive<u64> = 1..=16;
    /// Calls a minute: 1 to a million.
    pub const CALLS_PER_MINUTE: std::ops::RangeInclusive<u64> = 1..=1_000_000;
    /// Calls a day: 350 to a billion. Under 350 the budget's pace (a
    /// tenth at once, the rest spread over the day) leaves more than five
    /// minutes between calls, longer than a sync may wait for its next one.
    pub const CALLS_PER_DAY: std::ops::RangeInclusive<u64> = 350..=1_000_000_000;
    /// Items per call: 1 to the runtime's bound.
    pub const ITEMS_PER_CALL: std::ops::RangeInclusive<u64> =
        1..=crate::runtime::MAX_ITEMS_PER_CALL as u64;
    /// Calls at once when the connection does not say.
    pub const DEFAULT_CALLS_AT_ONCE: u32 = 8;

    /// Calls at once to the connection's ERP.
    pub fn calls_at_once(&self) -> u32 {
        self.calls_at_once.unwrap_or(Self::DEFAULT_CALLS_AT_ONCE)
    }

    /// Each override outside its range, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut check = |field: &str, v: Option<u64>, r: (u64, u64)| {
            if let Some(v) = v
                && !(r.0..=r.1).contains(&v)
            {
                out.push((
                    format!("limits.{field}"),
                    format!("{v} is outside {}..={}", r.0, r.1),
                ));
            }
        };
        let m = Self::MEMORY_MIB;
        check(
            "memory_mib",
            self.memory_mib.map(u64::from),
            (u64::from(*m.start()), u64::from(*m.end())),
        );
        let d = Self::DEADLINE_MS;
        check("deadline_ms", self.deadline_ms, (*d.start(), *d.end()));
        let h = Self::HTTP_TIMEOUT_MS;
        check(
            "http_timeout_ms",
            self.http_timeout_ms,
            (*h.start(), *h.end()),
        );
        let b = Self::DISK_MIB;
        check("disk_mib", self.disk_mib, (*b.start(), *b.end()));
        let f = Self::DISK_FILES;
        check("disk_files", self.disk_files, (*f.start(), *f.end()));
        for (field, v, r) in [
            ("calls_at_once", self.calls_at_once, Self::CALLS_AT_ONCE),
            (
                "calls_per_minute",
                self.calls_per_minute,
                Self::CALLS_PER_MINUTE,
            ),
            ("calls_per_day", self.calls_per_day, Self::CALLS_PER_DAY),
            ("items_per_call", self.items_per_call, Self::ITEMS_PER_CALL),
        ] {
            check(field, v.map(u64::from), (*r.start(), *r.end()));
        }
        out
    }
}

/// A tenant's use of one connector, with its settings (P4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub id: String,
    pub tenant_id: String,
    /// The connector (P3): a plugin's name, following its latest version
    /// in the registry (`csv`), a name pinned to a version (`csv@0.2.0`) or
    /// held to a semver requirement (`csv@^0.2`), or a path to a `.wasm`
    /// file (watched for new builds).
    pub plugin: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Settings handed to the plugin (base URL, organisation id...). Never secrets.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    /// Credential headers the host adds to the plugin's requests to the
    /// allowed hosts (for example `authorization`). Held by the host only.
    #[serde(default, skip_serializing)]
    pub credentials: std::collections::BTreeMap<String, String>,
    /// The hosts the plugin may call (`api.xero.com`, `127.0.0.1:8080`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// A directory the plugin is granted (the CSV connector's files).
    #[serde(default)]
    pub directory: Option<String>,
    #[serde(default)]
    pub mappings: Mappings,
    /// The ERP's bank account code for funding accounts with no mapping.
    #[serde(default)]
    pub default_bank_account: Option<String>,
    #[serde(default = "yes")]
    pub sync_bills: bool,
    #[serde(default = "yes")]
    pub sync_payments: bool,
    #[serde(default)]
    pub sync_before_approval: bool,
    #[serde(default)]
    pub limits: LimitOverrides,
    /// OAuth2 (P2, O2): the host obtains and refreshes the connection's
    /// access tokens and adds them to the plugin's requests as
    /// `Authorization: Bearer …`; the plugin never sees any of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
}

/// A connection's OAuth2 client and grant (refresh-token flow).
///
/// The secret and the refresh token are write-only: they are never
/// serialised back, and once stored the host keeps the refresh token the
/// ERP rotated to. Sending a refresh token again (after the user
/// re-authorised the app) replaces the grant.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// The ERP's token endpoint (Xero: `https://identity.xero.com/connect/token`).
    /// https, or plain http to loopback (simulators).
    pub token_url: String,
    pub client_id: String,
    /// Kept when left out on a change of an existing connection.
    #[serde(default, skip_serializing)]
    pub client_secret: String,
    /// A refresh token from the ERP's consent flow; left out on a change,
    /// the host keeps the one it holds.
    #[serde(default, skip_serializing)]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .finish()
    }
}

fn yes() -> bool {
    true
}

/// The plugin version that ran an attempt's operations (P3, L1): its name
/// and version as it describes itself, and the first 12 hex digits of its
/// component's SHA-256, which tells two builds of one version apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersion {
    pub name: String,
    pub version: String,
    pub digest: String,
}

impl std::fmt::Display for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.name, self.version, self.digest)
    }
}
