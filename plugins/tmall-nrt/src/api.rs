//! Everything the tmall-nrt adapter decides, as pure functions over plain types (no WIT types).
//!
//! `lib.rs` converts the WIT records to `top_common::contract` types and passes the
//! `settings.get` and `signed-http.send` imports in as closures, so the whole send and query flow
//! is tested natively with the fixtures under `fixtures/`. The wire conventions are those of
//! `docs/PLATFORMS.md` (tmall-nrt).
//!
//! * Send: `tmall.nrt.coupon.send`, one call per open id, with the JSON parameter
//!   `nrt_coupon_send_dto`. The API is idempotent by `out_id`, which is derived from the request's
//!   idempotency key and the open id, so resending a send never issues twice.
//! * Query: `tmall.nrt.coupon.instance.query` for one open id.
#![forbid(unsafe_code)]

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use top_common::contract::{
    AdapterInfo, AuthScheme, Coupon, CouponState, IssuedCoupon, Outcome, PlatformLimits, Recipient,
    RecipientKind, SendRequest,
};
use top_common::{
    ErrorClass, Field, HttpError, HttpRequest, HttpResponse, Idempotence, Lookup, Obj,
    RecipientCall, ResultResponse, TopConfig, TopError, TopList, as_i64, config_error, list_keys,
    millis_to_unix, read_answer_as, recipient_idempotency_id, send_one_by_one, top_response,
};

#[cfg(test)]
mod tests;

/// What `describe` answers.
pub const INFO: AdapterInfo = AdapterInfo {
    platform: "tmall-nrt",
    version: env!("CARGO_PKG_VERSION"),
    // One platform call per recipient: the host batches to this many calls per invocation.
    max_recipients_per_call: 20,
    // The platform deduplicates by `out_id`, which is stable across retries of a send.
    idempotent_send: true,
    recipient_kinds: &[RecipientKind::OpenId],
    operations: &["send-coupon", "query-coupons"],
    auth_scheme: AuthScheme::Top,
    // TOP limits per app key and API by contract, not in the API pages: `limits.qps` says it.
    limits: PlatformLimits::UNDOCUMENTED,
};

/// The TOP API behind `send-coupon`.
pub const SEND_METHOD: &str = "tmall.nrt.coupon.send";
/// The TOP API behind `query-coupons`.
pub const QUERY_METHOD: &str = "tmall.nrt.coupon.instance.query";
/// The send's JSON parameter.
pub const SEND_DTO_PARAM: &str = "nrt_coupon_send_dto";
/// The `coupon_type`s the API takes: 247 category coupon, 276 store coupon, 357 store-general
/// coupon.
pub const COUPON_TYPES: [u32; 3] = [247, 276, 357];

/// The settings both operations read, after `--option` overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `gateway` and `simplify`.
    pub top: TopConfig,
    /// `biz_code`: the business code, e.g. `YXX`. Required.
    pub biz_code: String,
    /// `coupon_type`: 247, 276 or 357. Required.
    pub coupon_type: u32,
}

impl Config {
    /// Reads `gateway`, `simplify`, `biz_code` and `coupon_type`.
    pub fn resolve(lookup: &Lookup<'_>) -> Result<Self, TopError> {
        let top = TopConfig::resolve(lookup)?;
        let biz_code =
            lookup.required("biz_code", "the Tmall new-retail business code, e.g. YXX")?;
        let text = lookup.required(
            "coupon_type",
            "247 (category coupon), 276 (store coupon) or 357 (store-general coupon)",
        )?;
        let coupon_type = text
            .parse::<u32>()
            .ok()
            .filter(|kind| COUPON_TYPES.contains(kind))
            .ok_or_else(|| {
                config_error(format!(
                    "settings.coupon_type must be 247, 276 or 357, got {text:?}"
                ))
            })?;
        Ok(Self {
            top,
            biz_code,
            coupon_type,
        })
    }
}

/// The settings the send reads on top of [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConfig {
    /// What the query needs too.
    pub config: Config,
    /// `channel`: the merchant's channel, e.g. `app`. Required.
    pub channel: String,
    /// `extra`: the DTO's optional extension field, sent as given (the platform reads it as
    /// JSON text). Absent or blank: left out.
    pub extra: Option<String>,
}

impl SendConfig {
    /// Reads [`Config`], `channel` and `extra`.
    pub fn resolve(lookup: &Lookup<'_>) -> Result<Self, TopError> {
        let config = Config::resolve(lookup)?;
        let channel = lookup.required("channel", "the sending channel, e.g. app")?;
        Ok(Self {
            config,
            channel,
            extra: lookup.get("extra"),
        })
    }
}

/// `nrt_coupon_send_dto`, whose fields serialize in this order: Java-bean order, as the TOP SDK
/// writes it (docs/PLATFORMS.md).
#[derive(Debug, Serialize)]
pub struct SendDto<'a> {
    /// From settings.
    pub biz_code: &'a str,
    /// From settings.
    pub channel: &'a str,
    /// From settings, a JSON number.
    pub coupon_type: u32,
    /// From settings; left out when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<&'a str>,
    /// The recipient.
    pub open_id: &'a str,
    /// [`recipient_idempotency_id`] of the request's idempotency key and the open id.
    pub out_id: &'a str,
    /// The request's `coupon`.
    pub uuid: &'a str,
}

/// The call of `tmall.nrt.coupon.send` for one open id. The DTO is serialized here, once, and
/// the host signs exactly this text.
pub fn build_send_request(
    config: &SendConfig,
    uuid: &str,
    open_id: &str,
    out_id: &str,
) -> Result<HttpRequest, TopError> {
    let dto = SendDto {
        biz_code: &config.config.biz_code,
        channel: &config.channel,
        coupon_type: config.config.coupon_type,
        extra: config.extra.as_deref(),
        open_id,
        out_id,
        uuid,
    };
    let json = serde_json::to_string(&dto).map_err(|error| {
        TopError::new(
            ErrorClass::InvalidRequest,
            "dto",
            format!("cannot write {SEND_DTO_PARAM}: {error}"),
        )
    })?;
    let top = &config.config.top;
    Ok(HttpRequest::top(&top.gateway, SEND_METHOD, top.simplify).param(SEND_DTO_PARAM, json))
}

/// The call of `tmall.nrt.coupon.instance.query` for one open id.
pub fn build_query_request(config: &Config, open_id: &str) -> HttpRequest {
    HttpRequest::top(&config.top.gateway, QUERY_METHOD, config.top.simplify)
        .param("user_id", open_id)
        .param("biz_code", config.biz_code.as_str())
        .param("coupon_types", config.coupon_type.to_string())
}

/// The business error numbers of seed 001, which arrive as the `sub_code` of a code-15
/// `error_response` (and as `result.code` of the query).
static NRT_CODES: &[(&str, ErrorClass)] = &[
    // 领取太多了,不要贪心~: the per-user limit.
    ("-7", ErrorClass::RecipientLimit),
    // 优惠券已领完,下次早点喔~: stock ran out.
    ("-6", ErrorClass::CouponUnavailable),
    // 优惠券无效,请联系客服~: ended or unknown uuid.
    ("-3", ErrorClass::CouponUnavailable),
    // 业务异常.
    ("-11", ErrorClass::InvalidRequest),
    // 系统异常.
    ("-9999", ErrorClass::Transient),
];

/// The class of one of the seed's error numbers.
pub fn nrt_class(code: &str) -> Option<ErrorClass> {
    NRT_CODES
        .iter()
        .find(|(known, _)| *known == code.trim())
        .map(|(_, class)| *class)
}

/// Reclassifies an error whose code is one of the seed's numbers (top-common's TOP classifier
/// does not know them); any other error is left as top-common classified it.
pub fn classify_nrt(error: TopError) -> TopError {
    match nrt_class(&error.code) {
        Some(class) => TopError {
            class,
            retry_after_ms: None,
            ..error
        },
        None => error,
    }
}

/// A text field, trimmed, or a number as text; `None` when absent or blank.
fn text(field: &Field<'_>) -> Option<String> {
    let value = field.text()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// What this adapter reads of a `tmall.nrt.coupon.send` response.
#[derive(Debug, Default, Deserialize)]
pub struct SendResponse<'a> {
    /// The issued coupon (`null` in the seed's sample).
    #[serde(borrow, default)]
    pub model: Obj<Model<'a>>,
    /// The TOP request id.
    #[serde(borrow, default)]
    pub request_id: Field<'a>,
}

top_response!(SendResponse);

/// A coupon instance: the send's `model`, or one of the query's `models`. Every field is
/// optional.
#[derive(Debug, Default, Deserialize)]
pub struct Model<'a> {
    /// The instance id.
    #[serde(borrow, default)]
    pub coupon_instance_id: Field<'a>,
    /// The template it was issued from (query only).
    #[serde(borrow, default)]
    pub coupon_template_id: Field<'a>,
    /// Its name.
    #[serde(borrow, default)]
    pub coupon_name: Field<'a>,
    /// 1 held, 2 used, 3 expired (query only).
    #[serde(borrow, default)]
    pub status: Field<'a>,
    /// Face value in fen.
    #[serde(borrow, default)]
    pub discount: Field<'a>,
    /// Minimum spend in fen.
    #[serde(borrow, default)]
    pub start_fee: Field<'a>,
    /// Start of validity, epoch milliseconds.
    #[serde(borrow, default)]
    pub start_time: Field<'a>,
    /// End of validity, epoch milliseconds.
    #[serde(borrow, default)]
    pub end_time: Field<'a>,
}

/// The coupon a successful send answer (`model`) describes.
///
/// An answer without a `model` object (the seed's sample shows `null`) says nothing about the
/// coupon: `transient` with code `no-model`, since resending with the same `out_id` is safe and
/// returns the first answer.
pub fn parse_send_response(
    response: &SendResponse<'_>,
    request_id: Option<&str>,
) -> Result<IssuedCoupon, TopError> {
    let Some(model) = &response.model.0 else {
        let message = format!(
            "{SEND_METHOD} answered without a model, so whether the coupon was issued is not known; resending with the same out_id is safe"
        );
        let error = TopError::new(ErrorClass::Transient, "no-model", message);
        return Err(TopError {
            request_id: request_id.map(str::to_owned),
            ..error
        });
    };
    Ok(IssuedCoupon {
        coupon_id: text(&model.coupon_instance_id),
        name: text(&model.coupon_name),
        amount_fen: as_i64(&model.discount),
        threshold_fen: as_i64(&model.start_fee),
        valid_from: millis_to_unix(&model.start_time),
        valid_until: millis_to_unix(&model.end_time),
    })
}

fn invalid(code: &str, message: String) -> TopError {
    TopError::new(ErrorClass::InvalidRequest, code, message)
}

/// Sends the coupon to every recipient, one call each.
///
/// Returns `Err` when the request itself is wrong (quantity other than 1, blank coupon or
/// idempotency key, settings) or when the first call fails in a way that holds for every call;
/// otherwise each recipient is issued or failed as [`send_one_by_one`] describes.
pub fn send_coupon(
    request: &SendRequest,
    settings: &dyn Fn(&str) -> Option<String>,
    mut http: impl FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>,
) -> Result<Outcome, TopError> {
    if request.quantity != 1 {
        let message = format!(
            "{SEND_METHOD} sends one coupon per recipient; quantity is {}",
            request.quantity
        );
        return Err(invalid("quantity", message));
    }
    if request.idempotency_key.trim().is_empty() {
        let message = "the idempotency key is empty, so no stable out_id can be derived";
        return Err(invalid("idempotency-key", message.to_owned()));
    }
    let uuid = request.coupon.trim();
    if uuid.is_empty() {
        return Err(invalid(
            "coupon",
            "the coupon (the Tmall coupon uuid) is empty".to_owned(),
        ));
    }
    let config = SendConfig::resolve(&Lookup::new(&request.options, settings))?;
    send_one_by_one(
        &request.recipients,
        RecipientKind::OpenId,
        INFO.platform,
        |open_id| {
            let out_id = recipient_idempotency_id(&request.idempotency_key, open_id);
            let call = match build_send_request(&config, uuid, open_id, &out_id) {
                Ok(call) => call,
                Err(error) => {
                    return RecipientCall {
                        request_id: None,
                        result: Err(error),
                    };
                }
            };
            let answer = http(&call);
            let (request_id, response) =
                read_answer_as::<SendResponse<'_>>(&answer, Idempotence::Idempotent);
            let result = response
                .map_err(classify_nrt)
                .and_then(|response| parse_send_response(&response, request_id.as_deref()));
            RecipientCall { request_id, result }
        },
    )
}

/// Lists the coupon instances the open id holds under the configured `biz_code` and
/// `coupon_type`.
pub fn query_coupons(
    recipient: &Recipient,
    options: &[(String, String)],
    settings: &dyn Fn(&str) -> Option<String>,
    mut http: impl FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>,
) -> Result<Vec<Coupon>, TopError> {
    let open_id = recipient.checked(RecipientKind::OpenId, QUERY_METHOD)?;
    let config = Config::resolve(&Lookup::new(options, settings))?;
    let answer = http(&build_query_request(&config, open_id));
    let (id, response) = read_answer_as::<QueryResponse<'_>>(&answer, Idempotence::Idempotent);
    let response = response.map_err(classify_nrt)?;
    parse_query_response(&response, id.as_deref())
}

list_keys!(StringKey = "string");

/// What this adapter reads of a `tmall.nrt.coupon.instance.query` response.
pub type QueryResponse<'a> = ResultResponse<'a, QueryResult<'a>>;

/// The query's `result`.
#[derive(Debug, Default, Deserialize)]
pub struct QueryResult<'a> {
    /// `"0"` on success, else one of the seed's numbers.
    #[serde(borrow, default)]
    pub code: Field<'a>,
    /// For people.
    #[serde(borrow, default)]
    pub message: Field<'a>,
    /// The coupon instances, each a JSON text of a [`Model`] (or the object itself).
    #[serde(default)]
    pub models: TopList<ModelCoupon, StringKey>,
}

/// One of the query's `models`, read into a coupon: a JSON text of an object, or the object;
/// `None` for anything else.
#[derive(Debug, Default)]
pub struct ModelCoupon(pub Option<Coupon>);

impl<'de> Deserialize<'de> for ModelCoupon {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModelVisitor;

        impl<'de> Visitor<'de> for ModelVisitor {
            type Value = ModelCoupon;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a model: a JSON text of an object, or the object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ModelCoupon, A::Error> {
                let model = Model::deserialize(MapAccessDeserializer::new(map))?;
                Ok(ModelCoupon(Some(parse_model(&model))))
            }

            fn visit_str<E: de::Error>(self, json: &str) -> Result<ModelCoupon, E> {
                // Text that is not JSON, or JSON that is not an object, is no model.
                let model = adapter_kit::json::from_slice::<Obj<Model<'_>>>(json.as_bytes());
                let model = model.ok().and_then(|model| model.0);
                Ok(ModelCoupon(model.map(|model| parse_model(&model))))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ModelCoupon, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ModelCoupon(None))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ModelCoupon, E> {
                Ok(ModelCoupon(None))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ModelCoupon, E> {
                Ok(ModelCoupon(None))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ModelCoupon, E> {
                Ok(ModelCoupon(None))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ModelCoupon, E> {
                Ok(ModelCoupon(None))
            }

            fn visit_unit<E: de::Error>(self) -> Result<ModelCoupon, E> {
                Ok(ModelCoupon(None))
            }
        }

        deserializer.deserialize_any(ModelVisitor)
    }
}

/// The coupons of a `tmall.nrt.coupon.instance.query` response object.
///
/// `result.code` other than `"0"` is an error (the seed's numbers by [`nrt_class`], any other
/// `invalid-request`); a response without a `result` object is `transient` `bad-response`.
/// `models` is a list of JSON texts (a plain array, or wrapped as `{"string": [...]}`); a model
/// that is already an object is taken too, and one that is neither is skipped.
pub fn parse_query_response(
    response: &QueryResponse<'_>,
    request_id: Option<&str>,
) -> Result<Vec<Coupon>, TopError> {
    let with_id = |error: TopError| TopError {
        request_id: request_id.map(str::to_owned),
        ..error
    };
    let Some(result) = &response.result.0 else {
        let message = format!("{QUERY_METHOD} answered without a result object");
        return Err(with_id(TopError::new(
            ErrorClass::Transient,
            "bad-response",
            message,
        )));
    };
    if let Some(code) = text(&result.code)
        && code != "0"
    {
        let class = nrt_class(&code).unwrap_or(ErrorClass::InvalidRequest);
        let what = text(&result.message).unwrap_or_else(|| "no message".to_owned());
        let message = format!("{QUERY_METHOD} failed: {what} (result code {code})");
        return Err(with_id(TopError::new(class, code, message)));
    }
    Ok(result
        .models
        .items
        .iter()
        .filter_map(|model| model.0.clone())
        .collect())
}

/// One model as a coupon.
fn parse_model(model: &Model<'_>) -> Coupon {
    let state = match as_i64(&model.status) {
        Some(1) => CouponState::Held,
        Some(2) => CouponState::Used,
        Some(3) => CouponState::Expired,
        _ => CouponState::Unknown,
    };
    Coupon {
        id: text(&model.coupon_instance_id).unwrap_or_default(),
        template_id: text(&model.coupon_template_id),
        title: text(&model.coupon_name),
        state,
        amount_fen: as_i64(&model.discount),
        threshold_fen: as_i64(&model.start_fee),
        valid_from: millis_to_unix(&model.start_time),
        valid_until: millis_to_unix(&model.end_time),
        claim_url: None,
    }
}
