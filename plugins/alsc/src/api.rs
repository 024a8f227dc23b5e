//! Everything the alsc adapter decides, as pure functions over plain types (no WIT types).
//!
//! `lib.rs` converts the WIT records to `top_common::contract` types and passes the
//! `settings.get` and `signed-http.send` imports in as closures, so the whole send and query flow
//! is tested natively with the fixtures under `fixtures/`. The wire conventions are those of
//! `docs/PLATFORMS.md` (alsc).
//!
//! * Send: `alibaba.alsc.crm.voucher.send`, one call per customer id, with the JSON parameter
//!   `param_voucher_send_open_req`. The API is idempotent by its `request_id`, derived from the
//!   request's idempotency key and the customer id. Business failures are not TOP errors: the
//!   answer's `result.biz_success` is false and `result.result_code` says why.
//! * Query: `alibaba.alsc.crm.customer.voucher.list` for one customer id, page by page.
//!
//! Both APIs are called without a session (seed 003); the host adds one only if configured.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use top_common::contract::{
    AdapterInfo, AuthScheme, Coupon, CouponState, IssuedCoupon, Outcome, PlatformLimits, Recipient,
    RecipientKind, SendRequest,
};
use top_common::{
    ErrorClass, Field, HttpError, HttpRequest, HttpResponse, Idempotence, Lookup, Obj,
    RecipientCall, ResultResponse, TopConfig, TopError, TopList, as_bool, list_keys,
    read_answer_as, recipient_idempotency_id, send_one_by_one, value_to_unix, yuan_to_fen,
};

#[cfg(test)]
mod tests;

/// What `describe` answers.
pub const INFO: AdapterInfo = AdapterInfo {
    platform: "alsc",
    version: env!("CARGO_PKG_VERSION"),
    // One platform call per recipient: the host batches to this many calls per invocation.
    max_recipients_per_call: 20,
    // The platform deduplicates by `request_id`, which is stable across retries of a send.
    idempotent_send: true,
    recipient_kinds: &[RecipientKind::CustomerId],
    operations: &["send-coupon", "query-coupons"],
    auth_scheme: AuthScheme::Top,
    // TOP limits per app key and API by contract, not in the API pages: `limits.qps` says it.
    limits: PlatformLimits::UNDOCUMENTED,
};

/// The TOP API behind `send-coupon`.
pub const SEND_METHOD: &str = "alibaba.alsc.crm.voucher.send";
/// The TOP API behind `query-coupons`.
pub const QUERY_METHOD: &str = "alibaba.alsc.crm.customer.voucher.list";
/// The send's JSON parameter.
pub const SEND_PARAM: &str = "param_voucher_send_open_req";
/// The query's JSON parameter.
pub const QUERY_PARAM: &str = "customer_voucher_full_open_req";
/// The most vouchers one send gives one customer (`voucher_num`).
pub const MAX_VOUCHER_NUM: u32 = 100;
/// Vouchers per query page.
pub const QUERY_PAGE_SIZE: u32 = 50;
/// The most pages one query reads (`QUERY_PAGES * QUERY_PAGE_SIZE` vouchers), so that an answer
/// that always says `has_next_page` cannot keep the adapter calling.
pub const QUERY_PAGES: u32 = 20;

/// The settings this adapter reads, after `--option` overrides. The optional ids are sent with
/// every voucher; absent or blank ones are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `gateway` and `simplify`.
    pub top: TopConfig,
    /// `brand_id`.
    pub brand_id: Option<String>,
    /// `shop_id`.
    pub shop_id: Option<String>,
    /// `out_brand_id`.
    pub out_brand_id: Option<String>,
    /// `out_shop_id`.
    pub out_shop_id: Option<String>,
    /// `operator_id`.
    pub operator_id: Option<String>,
}

impl Config {
    /// Reads `gateway`, `simplify` and the optional ids.
    pub fn resolve(lookup: &Lookup<'_>) -> Result<Self, TopError> {
        Ok(Self {
            top: TopConfig::resolve(lookup)?,
            brand_id: lookup.get("brand_id"),
            shop_id: lookup.get("shop_id"),
            out_brand_id: lookup.get("out_brand_id"),
            out_shop_id: lookup.get("out_shop_id"),
            operator_id: lookup.get("operator_id"),
        })
    }
}

/// `param_voucher_send_open_req` (VoucherSendOpenReq). Fields serialize in this order, Java-bean
/// order as the TOP SDK writes it; absent optional ids are left out.
#[derive(Debug, Serialize)]
pub struct VoucherSendReq<'a> {
    /// From settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<&'a str>,
    /// The recipient.
    pub customer_id: &'a str,
    /// From settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<&'a str>,
    /// From settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_brand_id: Option<&'a str>,
    /// From settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_shop_id: Option<&'a str>,
    /// [`recipient_idempotency_id`] of the request's idempotency key and the customer id.
    pub request_id: &'a str,
    /// From settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shop_id: Option<&'a str>,
    /// The request's `coupon` (the voucher template id).
    pub voucher_id: &'a str,
    /// The request's `quantity`.
    pub voucher_num: u32,
}

/// `customer_voucher_full_open_req`, as docs/PLATFORMS.md fixes it.
#[derive(Debug, Serialize)]
pub struct VoucherListReq<'a> {
    /// The recipient.
    pub customer_id: &'a str,
    /// From 1.
    pub page_no: u32,
    /// [`QUERY_PAGE_SIZE`].
    pub page_size: u32,
}

/// Serializes an object parameter once; the host signs exactly this text.
fn to_json(name: &str, value: &impl Serialize) -> Result<String, TopError> {
    serde_json::to_string(value).map_err(|error| {
        TopError::new(
            ErrorClass::InvalidRequest,
            "param",
            format!("cannot write {name}: {error}"),
        )
    })
}

/// The call of `alibaba.alsc.crm.voucher.send` for one customer.
pub fn build_send_request(
    config: &Config,
    voucher_id: &str,
    customer_id: &str,
    idempotency_id: &str,
    voucher_num: u32,
) -> Result<HttpRequest, TopError> {
    let req = VoucherSendReq {
        brand_id: config.brand_id.as_deref(),
        customer_id,
        operator_id: config.operator_id.as_deref(),
        out_brand_id: config.out_brand_id.as_deref(),
        out_shop_id: config.out_shop_id.as_deref(),
        request_id: idempotency_id,
        shop_id: config.shop_id.as_deref(),
        voucher_id,
        voucher_num,
    };
    let json = to_json(SEND_PARAM, &req)?;
    Ok(
        HttpRequest::top(&config.top.gateway, SEND_METHOD, config.top.simplify)
            .param(SEND_PARAM, json),
    )
}

/// The call of `alibaba.alsc.crm.customer.voucher.list` for one page of one customer's vouchers.
pub fn build_query_request(
    config: &Config,
    customer_id: &str,
    page_no: u32,
) -> Result<HttpRequest, TopError> {
    let req = VoucherListReq {
        customer_id,
        page_no,
        page_size: QUERY_PAGE_SIZE,
    };
    let json = to_json(QUERY_PARAM, &req)?;
    Ok(
        HttpRequest::top(&config.top.gateway, QUERY_METHOD, config.top.simplify)
            .param(QUERY_PARAM, json),
    )
}

/// The business `result_code`s (docs/PLATFORMS.md) and their classes; any other is `unknown`.
static RESULT_CODES: &[(&str, ErrorClass)] = &[
    ("VOUCHER_NOT_EXIST", ErrorClass::CouponUnavailable),
    ("VOUCHER_STOCK_NOT_ENOUGH", ErrorClass::CouponUnavailable),
    ("CUSTOMER_NOT_EXIST", ErrorClass::RecipientInvalid),
    ("EXCEED_LIMIT", ErrorClass::RecipientLimit),
    ("PARAM_ERROR", ErrorClass::InvalidRequest),
    ("SYSTEM_ERROR", ErrorClass::Transient),
];

/// The class of a business `result_code`.
pub fn result_code_class(code: &str) -> ErrorClass {
    RESULT_CODES
        .iter()
        .find(|(known, _)| *known == code.trim())
        .map_or(ErrorClass::Unknown, |(_, class)| *class)
}

/// A text field, trimmed, or a number as text; `None` when absent or blank.
fn text(field: &Field<'_>) -> Option<String> {
    let value = field.text()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn with_request_id(error: TopError, request_id: Option<&str>) -> TopError {
    TopError {
        request_id: request_id.map(str::to_owned),
        ..error
    }
}

/// The `result` object of both APIs' responses, as far as this adapter reads it.
#[derive(Debug, Default, Deserialize)]
pub struct VoucherResult<'a> {
    /// Whether the business call succeeded.
    #[serde(borrow, default)]
    pub biz_success: Field<'a>,
    /// Why not (docs/PLATFORMS.md lists the codes).
    #[serde(borrow, default)]
    pub result_code: Field<'a>,
    /// For people.
    #[serde(borrow, default)]
    pub result_desc: Field<'a>,
    /// For people, when there is no `result_desc`.
    #[serde(borrow, default)]
    pub result_view: Field<'a>,
    /// The query's vouchers (`VoucherOpenInfo`).
    #[serde(borrow, default)]
    pub result_list: TopList<Obj<Voucher<'a>>, VoucherOpenInfoKey>,
    /// Whether the query has another page.
    #[serde(borrow, default)]
    pub has_next_page: Field<'a>,
}

list_keys!(VoucherOpenInfoKey = "voucher_open_info");

/// A response of either API: its `result`.
pub type Response<'a> = ResultResponse<'a, VoucherResult<'a>>;

/// One voucher of the query; every field is optional.
#[derive(Debug, Default, Deserialize)]
pub struct Voucher<'a> {
    /// The voucher id.
    #[serde(borrow, default)]
    pub voucher_id: Field<'a>,
    /// Its template.
    #[serde(borrow, default)]
    pub voucher_template_id: Field<'a>,
    /// Its name.
    #[serde(borrow, default)]
    pub title: Field<'a>,
    /// `NORMAL`, `ISUSED` or `DELETED`.
    #[serde(borrow, default)]
    pub status: Field<'a>,
    /// Face value, yuan.
    #[serde(borrow, default)]
    pub amount: Field<'a>,
    /// Minimum spend, yuan.
    #[serde(borrow, default)]
    pub start_fee: Field<'a>,
    /// Start of validity, GMT+8 text.
    #[serde(borrow, default)]
    pub start_time: Field<'a>,
    /// End of validity, GMT+8 text.
    #[serde(borrow, default)]
    pub end_time: Field<'a>,
}

/// The error a `result` with `biz_success` not true reports: classed by its `result_code`
/// (code `biz-failure` when it has none), with `result_desc` / `result_view` for people.
fn business_error(method: &str, result: &VoucherResult<'_>, request_id: Option<&str>) -> TopError {
    let code = text(&result.result_code);
    let class = code
        .as_deref()
        .map_or(ErrorClass::Unknown, result_code_class);
    let desc = text(&result.result_desc).or_else(|| text(&result.result_view));
    let mut message = format!(
        "{method} failed: {}",
        desc.as_deref().unwrap_or("the platform gave no reason")
    );
    if let Some(code) = &code {
        message.push_str(&format!(" (result_code {code}"));
    } else {
        message.push_str(" (no result_code");
    }
    if let Some(id) = request_id {
        message.push_str(&format!(", request_id {id}"));
    }
    message.push(')');
    let code = code.unwrap_or_else(|| "biz-failure".to_owned());
    with_request_id(TopError::new(class, code, message), request_id)
}

/// The `result` object of a response, or a `transient` `bad-response` error.
fn result_object<'r, 'a>(
    method: &str,
    response: &'r Response<'a>,
    request_id: Option<&str>,
) -> Result<&'r VoucherResult<'a>, TopError> {
    response.result.0.as_ref().ok_or_else(|| {
        let message = format!("{method} answered without a result object");
        with_request_id(
            TopError::new(ErrorClass::Transient, "bad-response", message),
            request_id,
        )
    })
}

/// What a send answer says about the one customer it was for.
///
/// Issued only when `result.biz_success` is true; the answer names no voucher, so the issued
/// coupon has no fields. `biz_success` false is a [`result_code_class`] error. An answer that
/// says neither (no `result`, or neither `biz_success` nor `result_code`) is `transient`
/// `bad-response`: resending with the same `request_id` is safe.
pub fn parse_send_response(
    response: &Response<'_>,
    request_id: Option<&str>,
) -> Result<IssuedCoupon, TopError> {
    let result = result_object(SEND_METHOD, response, request_id)?;
    match as_bool(&result.biz_success) {
        Some(true) => Ok(IssuedCoupon::default()),
        Some(false) => Err(business_error(SEND_METHOD, result, request_id)),
        None if text(&result.result_code).is_some() => {
            Err(business_error(SEND_METHOD, result, request_id))
        }
        None => {
            let message = format!(
                "{SEND_METHOD} answered without biz_success, so whether the voucher was issued is not known; resending with the same request_id is safe"
            );
            Err(with_request_id(
                TopError::new(ErrorClass::Transient, "bad-response", message),
                request_id,
            ))
        }
    }
}

fn invalid(code: &str, message: String) -> TopError {
    TopError::new(ErrorClass::InvalidRequest, code, message)
}

/// Sends `quantity` vouchers to every recipient, one call each.
///
/// Returns `Err` when the request itself is wrong (quantity outside 1..=100, blank coupon or
/// idempotency key, settings) or when the first call fails in a way that holds for every call;
/// otherwise each recipient is issued or failed as [`send_one_by_one`] describes.
pub fn send_coupon(
    request: &SendRequest,
    settings: &dyn Fn(&str) -> Option<String>,
    mut http: impl FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>,
) -> Result<Outcome, TopError> {
    let quantity = request.quantity;
    if !(1..=MAX_VOUCHER_NUM).contains(&quantity) {
        let message = format!(
            "{SEND_METHOD} sends 1 to {MAX_VOUCHER_NUM} vouchers per customer; quantity is {quantity}"
        );
        return Err(invalid("quantity", message));
    }
    if request.idempotency_key.trim().is_empty() {
        let message = "the idempotency key is empty, so no stable request_id can be derived";
        return Err(invalid("idempotency-key", message.to_owned()));
    }
    let voucher_id = request.coupon.trim();
    if voucher_id.is_empty() {
        return Err(invalid(
            "coupon",
            "the coupon (the ALSC voucher_id) is empty".to_owned(),
        ));
    }
    let config = Config::resolve(&Lookup::new(&request.options, settings))?;
    send_one_by_one(
        &request.recipients,
        RecipientKind::CustomerId,
        INFO.platform,
        |customer_id| {
            let idempotency_id = recipient_idempotency_id(&request.idempotency_key, customer_id);
            let call =
                build_send_request(&config, voucher_id, customer_id, &idempotency_id, quantity);
            let call = match call {
                Ok(call) => call,
                Err(error) => {
                    return RecipientCall {
                        request_id: None,
                        result: Err(error),
                    };
                }
            };
            let answer = http(&call);
            let (request_id, answer) =
                read_answer_as::<Response<'_>>(&answer, Idempotence::Idempotent);
            let result =
                answer.and_then(|response| parse_send_response(&response, request_id.as_deref()));
            RecipientCall { request_id, result }
        },
    )
}

/// One page of a voucher list answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The vouchers on it.
    pub coupons: Vec<Coupon>,
    /// Whether the platform says another page follows.
    pub has_next_page: bool,
}

/// Lists the customer's vouchers, following `has_next_page` for at most [`QUERY_PAGES`] pages.
/// A failing page fails the query.
pub fn query_coupons(
    recipient: &Recipient,
    options: &[(String, String)],
    settings: &dyn Fn(&str) -> Option<String>,
    mut http: impl FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>,
) -> Result<Vec<Coupon>, TopError> {
    let customer_id = recipient.checked(RecipientKind::CustomerId, QUERY_METHOD)?;
    let config = Config::resolve(&Lookup::new(options, settings))?;
    let mut coupons = Vec::new();
    for page_no in 1..=QUERY_PAGES {
        let call = build_query_request(&config, customer_id, page_no)?;
        let answer = http(&call);
        let (id, answer) = read_answer_as::<Response<'_>>(&answer, Idempotence::Idempotent);
        let page = parse_query_response(&answer?, id.as_deref())?;
        let more = page.has_next_page && !page.coupons.is_empty();
        coupons.extend(page.coupons);
        if !more {
            break;
        }
    }
    Ok(coupons)
}

/// One page of an `alibaba.alsc.crm.customer.voucher.list` response object.
///
/// `result.biz_success` false is a [`result_code_class`] error; no `result` object is
/// `transient` `bad-response`. `result_list` is a plain array (simplified) or wrapped as
/// `{"voucher_open_info": [...]}`; items that are not objects are skipped and every field is
/// optional.
pub fn parse_query_response(
    response: &Response<'_>,
    request_id: Option<&str>,
) -> Result<Page, TopError> {
    let result = result_object(QUERY_METHOD, response, request_id)?;
    if as_bool(&result.biz_success) == Some(false) {
        return Err(business_error(QUERY_METHOD, result, request_id));
    }
    let coupons = result
        .result_list
        .items
        .iter()
        .filter_map(|item| item.0.as_ref())
        .map(parse_voucher)
        .collect();
    let has_next_page = as_bool(&result.has_next_page) == Some(true);
    Ok(Page {
        coupons,
        has_next_page,
    })
}

/// One voucher: amounts are yuan strings, times GMT+8 text.
fn parse_voucher(item: &Voucher<'_>) -> Coupon {
    let state = match text(&item.status)
        .map(|s| s.to_ascii_uppercase())
        .as_deref()
    {
        Some("NORMAL") => CouponState::Held,
        Some("ISUSED") => CouponState::Used,
        Some("DELETED") => CouponState::Expired,
        _ => CouponState::Unknown,
    };
    Coupon {
        id: text(&item.voucher_id).unwrap_or_default(),
        template_id: text(&item.voucher_template_id),
        title: text(&item.title),
        state,
        amount_fen: yuan_to_fen(&item.amount),
        threshold_fen: yuan_to_fen(&item.start_fee),
        valid_from: value_to_unix(&item.start_time),
        valid_until: value_to_unix(&item.end_time),
        claim_url: None,
    }
}
