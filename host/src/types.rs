//! The embedding API's plain data types: what a marketing engine sends in and gets back.
//!
//! They mirror the WIT records of `coupon:adapter` but belong to the host, so the library's
//! surface does not change when a new WIT version is added.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

/// Who a coupon goes to. Written `KIND:ID` on the CLI and in JSON (`nick:张三`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Recipient {
    /// A buyer nick (Taobao).
    Nick(String),
    /// A platform open id (Taobao open_uid, Tmall open_id, Douyin open_id).
    OpenId(String),
    /// A CRM customer id (Alibaba local services).
    CustomerId(String),
}

impl Recipient {
    /// The recipient's kind.
    pub fn kind(&self) -> RecipientKind {
        match self {
            Recipient::Nick(_) => RecipientKind::Nick,
            Recipient::OpenId(_) => RecipientKind::OpenId,
            Recipient::CustomerId(_) => RecipientKind::CustomerId,
        }
    }

    /// The id without its kind.
    pub fn id(&self) -> &str {
        match self {
            Recipient::Nick(id) | Recipient::OpenId(id) | Recipient::CustomerId(id) => id,
        }
    }
}

/// The kinds of [`Recipient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecipientKind {
    /// `nick:`
    Nick,
    /// `open-id:`
    OpenId,
    /// `customer-id:`
    CustomerId,
}

impl RecipientKind {
    /// The prefix used in `KIND:ID`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientKind::Nick => "nick",
            RecipientKind::OpenId => "open-id",
            RecipientKind::CustomerId => "customer-id",
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind().as_str(), self.id())
    }
}

/// A `KIND:ID` string that could not be read as a [`Recipient`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid recipient {input:?}: {reason}")]
pub struct ParseRecipientError {
    input: String,
    reason: String,
}

/// The longest recipient id accepted (platform ids are far shorter).
pub const MAX_RECIPIENT_ID_BYTES: usize = 256;

/// Why `c` may not be in a recipient id, if it may not: a control character (Unicode `Cc`), a
/// format character (`Cf`: zero-width characters, bidi controls, the BOM) or a private-use
/// character (`Co`). None of them is seen when an id is shown, so two ids that look the same
/// could differ by one, and a bidi control would make a report line lie about its text.
fn forbidden_in_id(c: char) -> Option<&'static str> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    match c.general_category() {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => Some("a format character (zero-width, bidi control or BOM)"),
        GeneralCategory::PrivateUse => Some("a private-use character"),
        _ => None,
    }
}

impl FromStr for Recipient {
    type Err = ParseRecipientError;

    /// Reads `KIND:ID`. The id is held to one rule wherever a recipient comes from (the CLI,
    /// JSON, a campaign file): not blank, at most [`MAX_RECIPIENT_ID_BYTES`] bytes, no control,
    /// format or private-use character, and kept in Unicode NFC, so the same id written
    /// composed or decomposed (`é` as U+00E9 or as `e` U+0301) is one recipient.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        use unicode_normalization::UnicodeNormalization;
        let error = |reason: String| ParseRecipientError {
            input: input.chars().take(64).collect(),
            reason,
        };
        let (kind, id) = input.split_once(':').ok_or_else(|| {
            error("expected KIND:ID with KIND one of nick, open-id, customer-id".to_owned())
        })?;
        if id.trim().is_empty() {
            return Err(error("the id is empty".to_owned()));
        }
        if id.len() > MAX_RECIPIENT_ID_BYTES * 4 {
            // Not normalised at all: NFC never shrinks text by that much.
            return Err(error("the id is longer than 256 bytes".to_owned()));
        }
        if let Some((c, what)) = id.chars().find_map(|c| forbidden_in_id(c).map(|w| (c, w))) {
            return Err(error(format!(
                "the id contains {what}, U+{:04X}",
                u32::from(c)
            )));
        }
        let id: String = id.nfc().collect();
        if id.len() > MAX_RECIPIENT_ID_BYTES {
            return Err(error("the id is longer than 256 bytes".to_owned()));
        }
        match kind {
            "nick" => Ok(Recipient::Nick(id)),
            "open-id" => Ok(Recipient::OpenId(id)),
            "customer-id" => Ok(Recipient::CustomerId(id)),
            _ => Err(error(
                "KIND must be nick, open-id or customer-id".to_owned(),
            )),
        }
    }
}

impl Serialize for Recipient {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the host does with a failure depends only on its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// The request is wrong: do not retry.
    InvalidRequest,
    /// Credentials are wrong or lack permission: do not retry.
    Unauthorized,
    /// The session or token expired.
    AuthExpired,
    /// The platform says "too frequent": back off.
    RateLimited,
    /// The coupon does not exist, expired or ran out.
    CouponUnavailable,
    /// The recipient reached the coupon's per-user limit.
    RecipientLimit,
    /// The recipient does not exist or cannot receive the coupon.
    RecipientInvalid,
    /// A failure that may succeed when retried.
    Transient,
    /// The outcome is not known; reconcile before resending.
    Unknown,
}

impl ErrorClass {
    /// The kebab-case name used in JSON and on the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidRequest => "invalid-request",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::AuthExpired => "auth-expired",
            ErrorClass::RateLimited => "rate-limited",
            ErrorClass::CouponUnavailable => "coupon-unavailable",
            ErrorClass::RecipientLimit => "recipient-limit",
            ErrorClass::RecipientInvalid => "recipient-invalid",
            ErrorClass::Transient => "transient",
            ErrorClass::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified platform failure, with the platform's own code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterError {
    /// What kind of failure it is.
    pub class: ErrorClass,
    /// The platform's code (`25`, `isv.coupon-error`, `-7`, `28001003`, …).
    pub code: String,
    /// The platform's message, for people.
    pub message: String,
    /// How long the platform asked us to wait, when it said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u32>,
}

impl AdapterError {
    /// A host-made error (not from the platform).
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        AdapterError {
            class,
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {}): {}", self.class, self.code, self.message)
    }
}

/// A request to send one coupon to recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The platform's coupon reference: Taobao `coupon_id`, Tmall `uuid`, ALSC `voucher_id`,
    /// Douyin `activity_id`.
    pub coupon: String,
    /// Who gets it.
    pub recipients: Vec<Recipient>,
    /// Coupons per recipient.
    pub quantity: u32,
    /// Stable across retries of the same send. `None`: the host generates one and returns it.
    pub idempotency_key: Option<String>,
    /// Per-call overrides of the plugin's settings.
    pub options: Vec<(String, String)>,
    /// The account (merchant) to send for; `None`: the plugin's only account (a plugin with
    /// several refuses the call).
    #[serde(default)]
    pub account: Option<String>,
}

impl SendRequest {
    /// One coupon to each recipient, no options, a generated idempotency key, the plugin's only
    /// account.
    pub fn new(coupon: impl Into<String>, recipients: Vec<Recipient>) -> Self {
        SendRequest {
            coupon: coupon.into(),
            recipients,
            quantity: 1,
            idempotency_key: None,
            options: Vec::new(),
            account: None,
        }
    }

    /// The request's idempotency key, generated now (and kept in the request) when it has none:
    /// a caller that must name the key even when the send fails as a whole (a `5xx`, to be
    /// resent under the same key) takes it from here before sending.
    pub fn idempotency_key_or_generate(&mut self) -> &str {
        self.idempotency_key.get_or_insert_with(new_idempotency_key)
    }
}

/// A generated key: milliseconds since the epoch, then 80 random bits (like a UUIDv7). Keys that
/// grow with time go in at the end of the journal's B-trees, which are keyed on them; fully
/// random keys dirtied (and had to read) a random leaf page of each table per send.
pub(crate) fn new_idempotency_key() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random = rand::random::<u128>() & ((1 << 80) - 1);
    format!("ch-{:012x}{random:020x}", ms & 0xFFFF_FFFF_FFFF)
}

/// A coupon issued to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCoupon {
    /// Who got it.
    pub recipient: Recipient,
    /// The platform's id of the issued coupon (instance), when it returned one.
    pub coupon_id: Option<String>,
    /// The coupon's name.
    pub name: Option<String>,
    /// Face value in fen.
    pub amount_fen: Option<i64>,
    /// Minimum spend in fen.
    pub threshold_fen: Option<i64>,
    /// Valid from, unix seconds UTC.
    pub valid_from: Option<i64>,
    /// Valid until, unix seconds UTC.
    pub valid_until: Option<i64>,
}

impl IssuedCoupon {
    /// A coupon issued to `recipient`, with nothing else known about it.
    pub fn new(recipient: Recipient) -> Self {
        IssuedCoupon {
            recipient,
            coupon_id: None,
            name: None,
            amount_fen: None,
            threshold_fen: None,
            valid_from: None,
            valid_until: None,
        }
    }
}

/// A recipient that did not get the coupon, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientFailure {
    /// Who did not get it.
    pub recipient: Recipient,
    /// Why.
    pub error: AdapterError,
}

/// The outcome of a send: every recipient of the request is in exactly one of the two lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendOutcome {
    /// Recipients that got the coupon.
    pub issued: Vec<IssuedCoupon>,
    /// Recipients that did not.
    pub failed: Vec<RecipientFailure>,
    /// The idempotency key the send ran under (generated when the caller gave none).
    pub idempotency_key: String,
    /// TOP `request_id` / Douyin `log_id` of every platform call, for support tickets.
    pub platform_request_ids: Vec<String>,
    /// True when this outcome was recorded by an earlier send with the same idempotency key and
    /// returned from the journal without calling the platform again.
    #[serde(default)]
    pub replayed: bool,
}

/// A request to list a recipient's coupons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// Whose coupons.
    pub recipient: Recipient,
    /// Per-call overrides of the plugin's settings.
    pub options: Vec<(String, String)>,
    /// The account (merchant) whose view to ask; `None`: the plugin's only account.
    #[serde(default)]
    pub account: Option<String>,
}

impl QueryRequest {
    /// A recipient's coupons, no options, the plugin's only account.
    pub fn new(recipient: Recipient) -> Self {
        QueryRequest {
            recipient,
            options: Vec::new(),
            account: None,
        }
    }
}

/// The state of a coupon a recipient holds or can claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CouponState {
    /// Can be claimed.
    Claimable,
    /// Held, not used.
    Held,
    /// Used.
    Used,
    /// Expired.
    Expired,
    /// The platform said something else.
    Unknown,
}

/// One coupon of a recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    /// The platform's id of the coupon.
    pub id: String,
    /// The template (batch) it came from.
    pub template_id: Option<String>,
    /// Its title.
    pub title: Option<String>,
    /// Its state.
    pub state: CouponState,
    /// Face value in fen.
    pub amount_fen: Option<i64>,
    /// Minimum spend in fen.
    pub threshold_fen: Option<i64>,
    /// Valid from, unix seconds UTC.
    pub valid_from: Option<i64>,
    /// Valid until, unix seconds UTC.
    pub valid_until: Option<i64>,
    /// Where a buyer can claim it.
    pub claim_url: Option<String>,
}

/// What an adapter says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// Platform name.
    pub platform: String,
    /// The adapter's own version.
    pub version: String,
    /// The most recipients one call may carry; the host batches to this.
    pub max_recipients_per_call: u32,
    /// Whether a resend with the same idempotency key cannot issue twice.
    pub idempotent_send: bool,
    /// Which recipient kinds it takes.
    pub recipient_kinds: Vec<RecipientKind>,
    /// Operations it implements.
    pub operations: Vec<String>,
    /// The auth scheme its requests need (`none`, `top`, `douyin`); contract 0.1.0 adapters do
    /// not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_scheme: Option<String>,
    /// The platform's documented limits, as the adapter declares them.
    #[serde(default)]
    pub limits: PlatformLimits,
}

/// What a platform documents about its limits ([`AdapterInfo::limits`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformLimits {
    /// Requests per second allowed per credential, when documented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qps: Option<u32>,
}

/// A loaded plugin, as `coupon-host plugins` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The plugin's name in the config.
    pub name: String,
    /// The component file.
    pub component: std::path::PathBuf,
    /// SHA-256 of the component file, lowercase hex.
    pub sha256: String,
    /// The WIT contract version the component exports.
    pub contract: String,
    /// What `describe` returned.
    pub describe: AdapterInfo,
}

/// Where a campaign stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignStatus {
    /// Its id.
    pub id: String,
    /// The plugin.
    pub plugin: String,
    /// The account (merchant) it sends for.
    pub account: String,
    /// The coupon.
    pub coupon: String,
    /// The recipients file.
    pub source: String,
    /// `running` (a live process works it), `waiting` (not finished, and no live process
    /// works it: a rerun, `coupon-host worker` or `serve` resumes it), `stopped` (a batch was
    /// refused for a reason every batch would meet: see `error`; fix the cause and run it
    /// again) or `done`.
    pub state: String,
    /// Recipient lines in the file (blank lines, comments and a CSV header not counted).
    pub total: u64,
    /// Recipients that got the coupon.
    pub issued: u64,
    /// Recipients that did not, with a class.
    pub failed: u64,
    /// Recipients whose fate could not be told (review them).
    pub unknown: u64,
    /// Lines not sent because they are malformed or name a kind the plugin does not take.
    pub rejected: u64,
    /// Lines not sent because they repeat an earlier line's recipient (sent once).
    #[serde(default)]
    pub skipped: u64,
    /// Recipients not finished yet.
    pub pending: u64,
    /// Why it stopped (state `stopped`): the platform's refusal of a whole batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AdapterError>,
    /// The worker processes that worked on it and were seen lately, with their progress.
    #[serde(default)]
    pub workers: Vec<WorkerStatus>,
}

impl CampaignStatus {
    /// Lines with a final state.
    pub fn finished(&self) -> u64 {
        self.issued + self.failed + self.unknown + self.rejected + self.skipped
    }
}

/// A process that worked on a campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The process (`host:pid:random`).
    pub id: String,
    /// How long ago it was last seen, in milliseconds, when the status was read.
    pub seen_ago_ms: u64,
    /// Batches it finished for this campaign.
    pub batches: u64,
    /// Recipients in those batches.
    pub recipients: u64,
}

impl WorkerStatus {
    /// The age of a sighting at `seen_ms` (unix ms), now.
    pub(crate) fn age(seen_ms: i64) -> u64 {
        now_ms().saturating_sub(seen_ms).max(0) as u64
    }
}

/// One line of a campaign report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportLine {
    /// The line number in the recipients file (1-based).
    pub line: u64,
    /// The recipient (`KIND:ID`), or the line's text when it was rejected.
    pub recipient: String,
    /// `issued`, `failed`, `unknown`, `rejected`, `skipped` (a repeat) or `pending`.
    pub state: String,
    /// The issued coupon's id, when the platform said it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon_id: Option<String>,
    /// The failure's class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The platform's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A merchant's authorization to keep, for [`Host::account_add`](crate::Host::account_add): its
/// credentials (sealed by the host before they are stored; never printed), and its settings,
/// which override the plugin's for this merchant.
#[derive(Clone)]
#[non_exhaustive]
pub struct AccountSpec {
    /// The account's name: 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or
    /// digit; not `default`.
    pub name: String,
    pub(crate) session: Option<crate::secret::Secret>,
    pub(crate) client: Option<(String, crate::secret::Secret)>,
    /// Settings that override the plugin's (`app_id`, `biz_code`, `brand_id`, …).
    pub settings: std::collections::BTreeMap<String, String>,
    /// Requests per second for this account alone, under the app's own `limits.qps`.
    pub qps: Option<u32>,
}

impl AccountSpec {
    /// An account with no credentials yet (a TOP account gets its session from
    /// [`Host::account_authorize`](crate::Host::account_authorize)).
    pub fn new(name: impl Into<String>) -> AccountSpec {
        AccountSpec {
            name: name.into(),
            session: None,
            client: None,
            settings: Default::default(),
            qps: None,
        }
    }

    /// A TOP seller's session (an OAuth access token obtained elsewhere).
    pub fn session(mut self, session: impl Into<String>) -> AccountSpec {
        self.session = Some(crate::secret::Secret::new(session));
        self
    }

    /// A Douyin merchant's own client key and secret.
    pub fn client(mut self, key: impl Into<String>, secret: impl Into<String>) -> AccountSpec {
        self.client = Some((key.into(), crate::secret::Secret::new(secret)));
        self
    }

    /// One setting that overrides the plugin's.
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> AccountSpec {
        self.settings.insert(key.into(), value.into());
        self
    }
}

impl fmt::Debug for AccountSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials: which ones there are is enough.
        f.debug_struct("AccountSpec")
            .field("name", &self.name)
            .field("session", &self.session.as_ref().map(|_| "***"))
            .field("client_key", &self.client.as_ref().map(|(key, _)| key))
            .field("settings", &self.settings)
            .field("qps", &self.qps)
            .finish()
    }
}

/// An account as `coupon-host accounts list` shows it: no secret, only whether there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccountInfo {
    /// The plugin.
    pub plugin: String,
    /// The account's name (`default`: the plugin's own credentials from the config).
    pub name: String,
    /// `active`, or `needs-reauth` (its calls fail at once until `accounts authorize`).
    pub state: String,
    /// Why it needs re-authorization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `config` (the plugin's `auth`) or `host` (kept with `coupon-host accounts`).
    pub source: String,
    /// Whether it holds a session (TOP).
    pub session: bool,
    /// When the session expires, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Until when the session can be refreshed, unix seconds (absent: it cannot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<i64>,
    /// The seller the platform named at authorization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller: Option<String>,
    /// The merchant's own client key (Douyin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// Its own requests-per-second limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qps: Option<u32>,
    /// Settings that override the plugin's.
    pub settings: std::collections::BTreeMap<String, String>,
    /// What adding it changed for other calls (`accounts add`): set when the plugin went from
    /// one account to several, so calls that name no account now fail until they name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Unix time in milliseconds, as the storage records it (`store::now_ms` is this).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_keys_are_distinct_and_grow_with_time() {
        let first = super::new_idempotency_key();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = super::new_idempotency_key();
        assert_ne!(first, second);
        assert_eq!(first.len(), "ch-".len() + 32);
        assert!(first.starts_with("ch-") && first[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        // The time prefix orders keys made a millisecond or more apart.
        assert!(first[..15] < second[..15], "{first} then {second}");
    }

    use super::*;

    #[test]
    fn recipients_round_trip_through_kind_id_text() {
        for text in [
            "nick:张三",
            "open-id:AAH-x_1",
            "customer-id:5757",
            "nick:a:b",
        ] {
            let recipient: Recipient = text.parse().unwrap();
            assert_eq!(recipient.to_string(), text);
        }
        assert_eq!(
            "nick:a:b".parse::<Recipient>().unwrap(),
            Recipient::Nick("a:b".into())
        );
    }

    #[test]
    fn rejects_malformed_recipients_with_a_reason() {
        for bad in ["张三", "nick:", "nick:  ", "email:a@b", "nick:a\nb"] {
            let err = bad.parse::<Recipient>().unwrap_err().to_string();
            assert!(err.starts_with("invalid recipient"), "{err}");
        }
        for (bad, named) in [
            ("nick:\u{200b}", "U+200B"),
            ("nick:a\u{202e}b", "U+202E"),
            ("nick:\u{feff}a", "U+FEFF"),
            ("nick:a\u{e000}", "U+E000"),
            ("nick:a\u{7}", "U+0007"),
        ] {
            let err = bad.parse::<Recipient>().unwrap_err().to_string();
            assert!(err.contains(named), "{err}");
        }
        let long = format!("nick:{}", "x".repeat(10_000));
        let err = long.parse::<Recipient>().unwrap_err().to_string();
        assert!(err.len() < 200, "error echoes the whole input: {err}");
    }

    #[test]
    fn composed_and_decomposed_ids_are_one_recipient_kept_composed() {
        let composed: Recipient = "nick:\u{e9}".parse().unwrap();
        let decomposed: Recipient = "nick:e\u{301}".parse().unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(decomposed.id(), "\u{e9}");
        // Combining marks are letters' parts, not format characters: they stay.
        assert_eq!(
            "nick:\u{e9}\u{301}".parse::<Recipient>().unwrap().id(),
            "\u{e9}\u{301}"
        );
    }

    #[test]
    fn error_classes_serialize_as_kebab_case() {
        assert_eq!(
            serde_json::to_string(&ErrorClass::RecipientInvalid).unwrap(),
            "\"recipient-invalid\""
        );
        assert_eq!(ErrorClass::AuthExpired.to_string(), "auth-expired");
    }
}
