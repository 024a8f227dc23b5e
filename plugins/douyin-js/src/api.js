// Everything the douyin-js adapter decides, as plain functions over plain values: no WIT import
// appears here, so `node --test` runs the whole send and query flow with a fake `http`.
// `adapter.js` is the glue to the `coupon:adapter` world.
//
// It mirrors the Rust adapter (plugins/douyin/src/api.rs) call for call, class for class, so
// either can serve the same plugin. Wire conventions: docs/PLATFORMS.md § douyin.
//
// * Send: POST {base_url}/api/promotion/v1/coupon/send_coupon_to_designated_user/, one call per
//   recipient and unit of quantity, each with its own merchant_coupon_id (the platform's
//   idempotency key), so resending a request with the same idempotency key issues nothing twice.
// * Query: POST {base_url}/api/promotion/v1/coupon/get_coupon_receive_info/ for one open id.
// * The host adds the access-token header and refreshes the token itself; nothing here sees it.
//
// Values follow the contract's JavaScript shape (componentize-js): records are objects with
// camelCase fields, variants `{ tag, val }`, enums strings, an absent option `undefined`, and
// integers that may exceed 2^53 (amounts, times) BigInt.

/** The platform name for `describe`. */
export const PLATFORM = 'douyin';
/** The adapter's own version (the one place it is written). */
export const VERSION = '0.1.0';
/** The host batches to this. Every recipient costs one call per unit of quantity. */
export const MAX_RECIPIENTS_PER_CALL = 20;
/**
 * Every call carries a merchant_coupon_id derived from the idempotency key, which the platform
 * deduplicates: a resend answers the first coupon_info and issues nothing.
 */
export const IDEMPOTENT_SEND = true;
/** The operations this adapter implements. */
export const OPERATIONS = ['send-coupon', 'query-coupons'];

/** The Douyin open API root when neither the `base_url` setting nor an option gives one. */
export const DEFAULT_BASE_URL = 'https://open.douyin.com';
export const SEND_PATH = '/api/promotion/v1/coupon/send_coupon_to_designated_user/';
export const QUERY_PATH = '/api/promotion/v1/coupon/get_coupon_receive_info/';
/** The most coupons one recipient may get in one request (one call each). */
export const MAX_QUANTITY = 10;
/** `coupon_status` 10 (待使用): the only value the query page documents. */
export const QUERY_COUPON_STATUS = 10;
/** `send_coupon_to_designated_user`: "接口QPS限制为100/appid" (the send API page). */
export const QPS_PER_APP = 100;
/** How long to wait after the platform said "too frequent" (29005012, 28003018). */
export const RATE_LIMIT_RETRY_AFTER_MS = 1000;

/** What `describe` answers. */
export const INFO = Object.freeze({
  platform: PLATFORM,
  version: VERSION,
  maxRecipientsPerCall: MAX_RECIPIENTS_PER_CALL,
  idempotentSend: IDEMPOTENT_SEND,
  recipientKinds: ['open-id'],
  operations: OPERATIONS,
  authScheme: 'douyin',
  limits: Object.freeze({ qps: QPS_PER_APP }),
});

/**
 * The contract's `adapter-error`. It is thrown as is: componentize-js turns a thrown value into
 * the `err` of the export's `result`, so it must be exactly this record.
 */
export function adapterError(errorClass, code, message, retryAfterMs = undefined) {
  return { class: errorClass, code: String(code), message: String(message), retryAfterMs };
}

/** True for a value made by `adapterError`, as opposed to an exception of the runtime. */
export function isAdapterError(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.class === 'string' &&
    typeof value.code === 'string' &&
    typeof value.message === 'string'
  );
}

function invalid(code, message) {
  return adapterError('invalid-request', code, message);
}

function configError(message) {
  return invalid('config', message);
}

/**
 * Reads `base_url` and `app_id`: an option with the same key overrides the setting (the last one
 * wins), and a blank value counts as absent. `options` is a list of [key, value] pairs,
 * `settings(key)` the plugin's setting or `undefined`.
 */
export function resolveConfig(options, settings) {
  const value = (key) => {
    let found;
    for (let i = options.length - 1; i >= 0; i--) {
      if (options[i][0] === key) {
        found = options[i][1];
        break;
      }
    }
    if (found === undefined) found = settings(key);
    if (found === undefined || found === null) return undefined;
    const trimmed = String(found).trim();
    return trimmed === '' ? undefined : trimmed;
  };
  const baseUrl = (value('base_url') ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
  const hasHost = ['https://', 'http://'].some(
    (scheme) => baseUrl.startsWith(scheme) && baseUrl.length > scheme.length,
  );
  if (!hasHost) {
    throw configError(
      `settings.base_url must be an http(s) URL such as ${DEFAULT_BASE_URL}, got ${JSON.stringify(baseUrl)}`,
    );
  }
  const appId = value('app_id');
  if (appId === undefined) {
    throw configError('settings.app_id is missing: set it to the mini-app appid (tt…)');
  }
  return { baseUrl, appId };
}

/**
 * The merchant_coupon_id of one unit: hex(sha256(idempotency_key + "\n" + open_id))[..32], plus
 * `-2`, `-3`… for units after the first (PLATFORMS.md conventions). WebCrypto's digest is the
 * engine's own SHA-256 (StarlingMonkey in the component, Node in the unit tests); it answers a
 * promise, which is why a send is async.
 */
export async function merchantCouponId(idempotencyKey, openId, unit) {
  const bytes = new TextEncoder().encode(`${idempotencyKey}\n${openId}`);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  let id = '';
  for (const byte of digest.subarray(0, 16)) id += byte.toString(16).padStart(2, '0');
  return unit > 1 ? `${id}-${unit}` : id;
}

function jsonPost(url, body) {
  return {
    url,
    headers: [['content-type', 'application/json']],
    body: new TextEncoder().encode(JSON.stringify(body)),
  };
}

/** The call that sends one unit to one open id. The field order is the Rust adapter's. */
export function buildSendRequest(config, activityId, openId, merchantCouponId) {
  return jsonPost(`${config.baseUrl}${SEND_PATH}`, {
    activity_id: activityId,
    app_id: config.appId,
    open_id: openId,
    merchant_coupon_id: merchantCouponId,
  });
}

/** The call that lists an open id's unused coupons. */
export function buildQueryRequest(config, openId) {
  return jsonPost(`${config.baseUrl}${QUERY_PATH}`, {
    app_id: config.appId,
    open_id: openId,
    coupon_status: QUERY_COUPON_STATUS,
  });
}

/**
 * Every err_no this adapter knows: [code, class, meaning used when the answer has no message].
 * Sources: PLATFORMS.md § douyin, PROTOCOLS.md §2.4, seed 004.
 */
export const KNOWN_CODES = [
  [28001003, 'auth-expired', 'access_token无效'],
  [28001005, 'transient', '系统内部错误,请重试'],
  [28001006, 'transient', '网络调用错误,请重试'],
  [28001007, 'invalid-request', '参数不合法'],
  [28001008, 'auth-expired', 'access_token过期,请刷新或重新授权'],
  [28001012, 'invalid-request', 'the user did not authorize this OpenAPI'],
  [28001014, 'unauthorized', 'the app has no capability authorized'],
  [28001015, 'invalid-request', 'the access_token and open_id do not match'],
  [28001016, 'unauthorized', 'the app is banned or offline'],
  [28001017, 'invalid-request', 'unknown URI'],
  [28001018, 'unauthorized', 'the app lacks this capability'],
  [28001019, 'unauthorized', 'the capability is banned or offline'],
  [28001020, 'invalid-request', 'test app: the user is not bound'],
  [28001021, 'invalid-request', 'test app: the app expired'],
  [28001052, 'rate-limited', 'abnormal risk, try later'],
  [28001056, 'invalid-request', 'the API was taken offline'],
  [28003017, 'rate-limited', 'quota exhausted'],
  [28003018, 'rate-limited', '请求频率过高'],
  [29005001, 'coupon-unavailable', 'the activity does not exist or has ended'],
  [29005002, 'coupon-unavailable', "the activity's stock is exhausted"],
  [29005003, 'recipient-limit', "the user reached the activity's per-user limit"],
  [29005004, 'recipient-invalid', 'the user is not eligible (no mini-app use in 7 days)'],
  [29005012, 'rate-limited', '尝试过于频繁'],
  [29005077, 'invalid-request', '资源不存在'],
  // Legacy codes of the old open API.
  [2100004, 'transient', '系统繁忙'],
  [2100005, 'invalid-request', '参数不合法'],
  [2190002, 'auth-expired', 'access_token无效'],
  [2190008, 'auth-expired', 'access_token过期'],
];

function known(errNo) {
  return KNOWN_CODES.find(([code]) => BigInt(code) === errNo);
}

/** The class of a non-zero err_no (a BigInt): from KNOWN_CODES, else `unknown`. */
export function classify(errNo) {
  return known(errNo)?.[1] ?? 'unknown';
}

/**
 * A platform error: the code is the err_no, the message the platform's (else the known meaning),
 * with the call's log_id.
 */
export function platformError(errNo, message, logId) {
  const entry = known(errNo);
  let text = message.trim();
  if (text === '') text = entry ? entry[2] : `err_no ${errNo} without a message`;
  if (logId !== undefined) text += ` (log_id ${logId})`;
  const tooFrequent = errNo === 29005012n || errNo === 28003018n;
  return adapterError(
    classify(errNo),
    errNo.toString(),
    text,
    tooFrequent ? RATE_LIMIT_RETRY_AFTER_MS : undefined,
  );
}

/** A `signed-http` failure (`{ tag, val }`), classified. */
export function httpError(error) {
  const why = error.val === undefined ? '' : String(error.val);
  switch (error.tag) {
    case 'denied':
      return adapterError('invalid-request', 'http.denied', why);
    case 'connect':
      return adapterError('transient', 'http.connect', why);
    case 'timeout':
      return adapterError(
        'transient',
        'http.timeout',
        'no answer in time; the platform may have applied the call, but a resend with the same idempotency key reuses the merchant_coupon_id and cannot issue twice',
      );
    case 'too-large':
      return adapterError('transient', 'http.too-large', 'the answer was larger than the host allows');
    case 'unauthorized':
      return adapterError('unauthorized', 'http.unauthorized', why);
    default:
      return adapterError('transient', 'http.other', why);
  }
}

const TWO_63 = 1n << 63n;

function inI64(value) {
  return value >= -TWO_63 && value < TWO_63 ? value : undefined;
}

function floatToI64(float) {
  // Integral and within i64 (2^63 is exactly representable, so `<` excludes it).
  return Number.isFinite(float) && Number.isInteger(float) && Math.abs(float) < 2 ** 63
    ? BigInt(float)
    : undefined;
}

const INTEGER_TEXT = /^[+-]?\d+$/;
const FLOAT_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** An integer (BigInt) from a JSON number (integral floats too) or a decimal string. */
export function asI64(value) {
  if (typeof value === 'bigint') return inI64(value);
  if (typeof value === 'number') return floatToI64(value);
  if (typeof value === 'string') {
    const text = value.trim();
    if (INTEGER_TEXT.test(text)) return inI64(BigInt(text)) ?? floatToI64(Number(text));
    if (FLOAT_TEXT.test(text)) return floatToI64(Number(text));
  }
  return undefined;
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A field of an object; undefined for anything that is not an object. */
function field(object, key) {
  return isObject(object) && Object.hasOwn(object, key) ? object[key] : undefined;
}

/** A non-empty trimmed string from a JSON string or number field. */
function text(object, key) {
  const value = field(object, key);
  let result;
  if (typeof value === 'string') result = value.trim();
  else if (typeof value === 'number' || typeof value === 'bigint') result = String(value);
  else return undefined;
  return result === '' ? undefined : result;
}

/** Epoch numbers at or above this are milliseconds (10^11 s is the year 5138). */
const MILLIS_THRESHOLD = 100_000_000_000n;

/** Unix seconds from a number or numeric string; milliseconds are tolerated and converted. */
function unix(object, key) {
  const time = asI64(field(object, key));
  if (time === undefined) return undefined;
  return time >= MILLIS_THRESHOLD ? time / 1000n : time;
}

function amount(object, key) {
  return asI64(field(object, key));
}

/**
 * JSON.parse that keeps integers beyond 2^53 exact (as BigInt) where the engine hands the reviver
 * the number's source text; elsewhere they are parsed as the nearest double, like any JSON number
 * in JavaScript.
 */
function parseJson(source) {
  return JSON.parse(source, (_key, value, context) => {
    if (
      typeof value === 'number' &&
      !Number.isSafeInteger(value) &&
      typeof context?.source === 'string' &&
      INTEGER_TEXT.test(context.source)
    ) {
      return BigInt(context.source);
    }
    return value;
  });
}

/**
 * The largest body read as JSON. Douyin's answers are a few KiB; the host hands over up to
 * `limits.max_response_kib` (4 MiB by default), and parsing that much takes more memory than an
 * instance has (`limits.memory_mib`, 64 MiB by default): the call would be killed, and its
 * recipients left `unknown`, instead of failing as a bad answer.
 */
const MAX_JSON_BYTES = 1 << 20;

/** The deepest nesting read as JSON: Douyin's answers nest four deep, and the engine spends
 * memory on every level (a body of 100 000 `[` exhausts an instance). */
const MAX_JSON_DEPTH = 64;

/** Whether a JSON text nests arrays and objects deeper than `limit` (brackets in strings skipped). */
function nestsDeeperThan(body, limit) {
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (const byte of body) {
    if (inString) {
      if (escaped) escaped = false;
      else if (byte === 0x5c) escaped = true; // backslash
      else if (byte === 0x22) inString = false; // quote
    } else if (byte === 0x22) {
      inString = true;
    } else if (byte === 0x5b || byte === 0x7b) {
      depth += 1;
      if (depth > limit) return true;
    } else if (byte === 0x5d || byte === 0x7d) {
      depth -= 1;
    }
  }
  return false;
}

/**
 * The body as JSON, or undefined when it is not UTF-8 or not JSON, or too large or too deeply
 * nested to be one of Douyin's answers.
 */
function bodyJson(body) {
  if (body.length > MAX_JSON_BYTES || nestsDeeperThan(body, MAX_JSON_DEPTH)) return undefined;
  try {
    return parseJson(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body));
  } catch {
    return undefined;
  }
}

/** The first 120 characters of a body, for messages about answers that are not JSON. */
function snippet(body) {
  // Only the start is decoded: a body may be megabytes.
  const whole = new TextDecoder('utf-8').decode(body.subarray(0, 1024)).trim();
  const chars = Array.from(whole);
  let short = chars.slice(0, 120).join('');
  if (chars.length > 120) short += '…';
  return short === '' ? '(empty body)' : short;
}

/**
 * One call's answer: its log_ids (body `log_id`, then an `X-Tt-Logid` header that differs) and
 * either `data` (`null` when absent) or the call's error.
 *
 * `answer` is `{ ok: response }` or `{ err: { tag, val } }`. Success is HTTP 200 with err_no 0 (a
 * number or a numeric string). An answer without err_no but with the older `data.error_code`
 * envelope is read from that. Anything else that is not a JSON object with a numeric code is
 * `transient` / `bad-response`.
 */
export function readAnswer(answer) {
  if (answer.err !== undefined) return { logIds: [], error: httpError(answer.err) };
  const response = answer.ok;
  const json = bodyJson(response.body);
  const logIds = [];
  const headerId = response.headers
    .find(([name]) => name.toLowerCase() === 'x-tt-logid')?.[1]
    ?.trim();
  for (const id of [text(json, 'log_id'), headerId || undefined]) {
    if (id !== undefined && !logIds.includes(id)) logIds.push(id);
  }
  const logId = logIds[0];
  const withLogId = (message) => (logId === undefined ? message : `${message} (log_id ${logId})`);

  const status = response.status;
  if (status !== 200) {
    const message = withLogId(`the Douyin open API answered HTTP ${status}`);
    // 429 is the gateway's own "too many requests": back off like 29005012, not like a 5xx.
    const error =
      status === 429
        ? adapterError('rate-limited', `http.${status}`, message, RATE_LIMIT_RETRY_AFTER_MS)
        : adapterError('transient', `http.${status}`, message);
    return { logIds, error };
  }
  const bad = (why) => ({
    logIds,
    error: adapterError('transient', 'bad-response', withLogId(`${why}: ${snippet(response.body)}`)),
  });
  if (!isObject(json)) return bad('the answer is not a JSON object');
  const data = Object.hasOwn(json, 'data') ? json.data : null;
  let code = asI64(json.err_no);
  let message;
  if (code !== undefined) {
    message = text(json, 'err_msg') ?? text(json, 'err_tips');
  } else {
    code = asI64(field(data, 'error_code'));
    if (code === undefined) return bad('the answer has no numeric err_no');
    message = text(data, 'description');
  }
  if (code === 0n) return { logIds, data };
  return { logIds, error: platformError(code, message ?? '', logId) };
}

/** The coupon of a send answer's `data` (`data.coupon_info`); every field is optional. */
export function parseCouponInfo(data) {
  const info = field(data, 'coupon_info');
  return {
    couponId: text(info, 'coupon_id'),
    name: text(info, 'coupon_name'),
    amountFen: amount(info, 'discount_amount'),
    thresholdFen: amount(info, 'min_pay_amount'),
    validFrom: unix(info, 'valid_begin_time'),
    validUntil: unix(info, 'valid_end_time'),
  };
}

/** How far an error reaches: one recipient, the whole request, or the coupon. */
function scope(error, firstCall) {
  switch (error.class) {
    // Every recipient would fail the same way.
    case 'unauthorized':
    case 'auth-expired':
    case 'rate-limited':
      return 'request';
    // The activity is gone or out of stock: fail the rest uncalled.
    case 'coupon-unavailable':
      return 'coupon';
  }
  // Nothing reached the platform, and the next call would go the same way.
  if (['http.denied', 'http.connect', 'http.timeout', 'http.other'].includes(error.code)) {
    return 'request';
  }
  // 参数不合法 before any call succeeded: the app_id or activity_id is wrong.
  if (error.class === 'invalid-request' && firstCall && error.code === '28001007') return 'request';
  return 'recipient';
}

function partialNote(units, quantity) {
  const ids = units.map((unit) => unit.couponId ?? '?').join(', ');
  return `; ${units.length} of ${quantity} coupons were issued to this recipient (coupon_id ${ids}), and a resend with the same idempotency key does not issue them again`;
}

/**
 * Sends `quantity` coupons of the activity to every recipient, one call per unit.
 *
 * `request` is the contract's `send-request`; `settings(key)` reads a setting; `http(call)` makes
 * one `signed-http` call and answers `{ ok: response }` or `{ err: httpError }`.
 *
 * Throws an adapter-error when the request itself is wrong (quantity, activity id, idempotency
 * key, settings), or when an error that would hit every recipient comes before anything was
 * issued. Otherwise every recipient ends up issued or failed, in request order: a recipient fails
 * with the first error among its units (the message says which units were issued), and after a
 * request-wide or coupon-unavailable error the remaining recipients fail with it, uncalled.
 *
 * Returns `{ issued: [{ recipient, coupon, extraCouponIds }], failed, requestIds }`: the
 * contract carries one coupon per recipient, so the ids of units 2.. are returned apart.
 */
export async function sendCoupon(request, settings, http) {
  const quantity = request.quantity;
  if (!(quantity >= 1 && quantity <= MAX_QUANTITY)) {
    throw invalid(
      'quantity',
      `douyin sends 1 to ${MAX_QUANTITY} coupons per recipient (one call each); quantity is ${quantity}`,
    );
  }
  const activityId = request.coupon.trim();
  if (activityId === '') {
    throw invalid('coupon', 'the coupon must be a douyin activity_id; it is empty');
  }
  const key = request.idempotencyKey;
  if (key.trim() === '') {
    throw invalid(
      'idempotency-key',
      'the idempotency key is empty: every merchant_coupon_id derives from it',
    );
  }
  const config = resolveConfig(request.options, settings);

  const outcome = { issued: [], failed: [], requestIds: [] };
  let issuedAny = false;
  let calls = 0;
  let stopped;
  const seen = new Set();
  for (const recipient of request.recipients) {
    const fail = (error) => outcome.failed.push({ recipient, error });
    if (recipient.tag !== 'open-id') {
      fail(invalid('recipient-kind', 'douyin takes open-id recipients only'));
      continue;
    }
    const openId = recipient.val;
    if (openId.trim() === '') {
      fail(invalid('recipient-empty', 'the open_id is empty'));
      continue;
    }
    if (seen.has(openId)) {
      fail(invalid('recipient-duplicate', `open_id ${JSON.stringify(openId)} is listed twice; sent once`));
      continue;
    }
    seen.add(openId);
    if (stopped !== undefined) {
      fail({ ...stopped, message: `not sent because an earlier call failed: ${stopped.message}` });
      continue;
    }

    const units = [];
    let failure;
    for (let unit = 1; unit <= quantity; unit++) {
      const id = await merchantCouponId(key, openId, unit);
      const call = buildSendRequest(config, activityId, openId, id);
      const firstCall = calls === 0;
      calls += 1;
      const answer = readAnswer(http(call));
      outcome.requestIds.push(...answer.logIds);
      if (answer.error === undefined) {
        units.push(parseCouponInfo(answer.data));
        issuedAny = true;
        continue;
      }
      const reach = scope(answer.error, firstCall);
      if (reach === 'request' && !issuedAny) throw answer.error;
      if (reach !== 'recipient') stopped = { ...answer.error };
      failure = { ...answer.error };
      break;
    }
    if (failure !== undefined) {
      if (units.length > 0) failure.message += partialNote(units, quantity);
      fail(failure);
    } else {
      const [coupon, ...rest] = units;
      outcome.issued.push({
        recipient,
        coupon,
        extraCouponIds: rest.map((unit) => unit.couponId).filter((id) => id !== undefined),
      });
    }
  }
  return outcome;
}

/**
 * Lists the open id's unused coupons (coupon_status 10), as the contract's `coupon` records.
 * `recipient` is the contract's `recipient`; `options`, `settings` and `http` as for a send.
 */
export function queryCoupons(recipient, options, settings, http) {
  if (recipient.tag !== 'open-id') {
    throw invalid('recipient-kind', 'douyin takes open-id recipients only');
  }
  const openId = recipient.val;
  if (openId.trim() === '') throw invalid('recipient-empty', 'the open_id is empty');
  const config = resolveConfig(options, settings);
  const answer = readAnswer(http(buildQueryRequest(config, openId)));
  if (answer.error !== undefined) throw answer.error;
  return parseQueryResponse(answer.data);
}

/**
 * The coupons of a query answer's `data.coupon_receive_list`; items that are not objects are
 * skipped, every field is optional, and extra fields are ignored.
 */
export function parseQueryResponse(data) {
  const list = field(data, 'coupon_receive_list');
  if (!Array.isArray(list)) return [];
  return list.filter(isObject).map(parseCoupon);
}

const STATES = new Map([
  [10n, 'held'],
  [20n, 'used'],
  [30n, 'expired'],
]);

function parseCoupon(item) {
  const status = asI64(item.coupon_status);
  return {
    id: text(item, 'coupon_id') ?? '',
    // This API reports no template id and no claim URL.
    templateId: undefined,
    title: text(item, 'coupon_name'),
    state: (status !== undefined && STATES.get(status)) || 'unknown',
    amountFen: amount(item, 'discount_amount'),
    thresholdFen: amount(item, 'min_pay_amount'),
    validFrom: unix(item, 'valid_begin_time'),
    validUntil: unix(item, 'valid_end_time'),
    claimUrl: undefined,
  };
}
