// The adapter's platform mapping (the template's: Taobao), as plain functions over plain values.
// No WIT import appears here, so `node --test` runs the whole send and query flow with a fake
// `http`; src/adapter.js is the glue to the `coupon:adapter` world. REPLACE marks what is
// Taobao's and is what you change for your platform:
//
// * send: taobao.promotion.coupon.sns.send, one call for up to 100 nicks (`buyer_nick`, comma
//   separated); the answer lists who got a coupon (coupon_results) and who did not
//   (failure_buyers).
// * query: taobao.qianniu.coupon.buyer.get for one nick.
//
// The rules every adapter keeps (docs/WRITING_AN_ADAPTER.md in coupon-host; `coupon-host check`
// tests them): every recipient of a send ends exactly once, issued or failed; nobody is issued
// unless the platform said so; every failure has the error class the host acts on; never throw
// anything but an adapter-error; a few HTTP calls per recipient at most.
//
// Values have the contract's JavaScript shape (componentize-js): records are objects with
// camelCase fields, variants `{ tag, val }`, enums strings, an absent option `undefined`, a tuple
// an array, list<u8> a Uint8Array, and s64 (amounts, times) a BigInt.

// REPLACE: your platform's APIs and limits.
export const SEND_METHOD = 'taobao.promotion.coupon.sns.send';
export const QUERY_METHOD = 'taobao.qianniu.coupon.buyer.get';
/** The API takes at most 100 nicks per call; the host batches to maxRecipientsPerCall. */
const MAX_NICKS = 100;

/** What the host (and `coupon-host check`) learns about the adapter when it loads it. */
export function describe() {
  return {
    platform: 'taobao',
    version: '0.1.0',
    maxRecipientsPerCall: MAX_NICKS,
    // Taobao's send has no idempotency key: a resend after a lost answer could issue twice. With
    // false, the host never resends blindly after an `unknown` failure; it asks queryCoupons.
    idempotentSend: false,
    recipientKinds: ['nick'],
    operations: ['send-coupon', 'query-coupons'],
    // The host signs every request with the plugin's TOP credentials (auth.scheme = "top").
    authScheme: 'top',
    // The platform's documented requests per second per credential, if it has one.
    limits: { qps: undefined },
  };
}

/** The contract's adapter-error. Throw it: componentize-js makes it the export's `err`. */
export function adapterError(errorClass, code, message) {
  return { class: errorClass, code: String(code), message: String(message), retryAfterMs: undefined };
}

/** True for a value made by adapterError, as opposed to an exception of the runtime. */
export function isAdapterError(value) {
  return typeof value?.class === 'string' && typeof value?.code === 'string';
}

/** A setting: the call's `--option KEY=VALUE` first, then the plugin's settings. */
function setting(options, settings, key) {
  const option = options.find(([name]) => name === key);
  return option !== undefined ? option[1] : settings(key);
}

/** REPLACE: the platform's endpoint, from `settings = { gateway = "…" }` in the host config. */
function gateway(options, settings) {
  const url = setting(options, settings, 'gateway');
  if (url === undefined) {
    throw adapterError('invalid-request', 'config', 'the plugin has no `gateway` setting');
  }
  return url;
}

/**
 * REPLACE: one call of a TOP API. Only the application parameters: the host adds app_key,
 * session, timestamp, v, sign_method and the signature, then form-encodes the POST.
 */
function topCall(url, method, params) {
  return {
    method: 'post',
    url,
    headers: [],
    params: [['method', method], ['format', 'json'], ...params],
    body: undefined,
  };
}

/**
 * `request` is the contract's send-request; `settings(key)` reads a plugin setting; `http(call)`
 * is signed-http.send as `{ ok: response }` or `{ err: httpError }`.
 */
export function sendCoupon(request, settings, http) {
  // A thrown error fails every recipient with it (the host does that).
  if (request.quantity !== 1) {
    const why = `${SEND_METHOD} sends one coupon per recipient`;
    throw adapterError('invalid-request', 'quantity', why);
  }
  if (!/^[0-9]+$/.test(request.coupon)) {
    throw adapterError('invalid-request', 'coupon-id', `not a Taobao coupon_id: ${request.coupon}`);
  }
  const url = gateway(request.options, settings);
  const outcome = { issued: [], failed: [], platformRequestIds: [] };
  const fail = (recipient, error) => outcome.failed.push({ recipient, error });

  // Recipients the platform cannot take fail here, without a call; the rest are sent.
  const nicks = [];
  for (const recipient of request.recipients) {
    const nick = recipient.val;
    if (recipient.tag !== 'nick') {
      fail(recipient, adapterError('invalid-request', 'recipient', 'taobao takes nicks only'));
    } else if (nick.trim() === '' || nick.includes(',')) {
      const why = "a nick must not be empty or contain ',' (TOP's list separator)";
      fail(recipient, adapterError('invalid-request', 'recipient', why));
    } else if (nicks.some((sent) => sent.nick === nick)) {
      // The same nick twice would get two coupons: send it once, fail the repeat.
      const why = 'this nick is already in the request; it is sent once';
      fail(recipient, adapterError('invalid-request', 'recipient', why));
    } else {
      nicks.push({ recipient, nick });
    }
  }

  // The host sends at most maxRecipientsPerCall recipients at once: one platform call.
  if (nicks.length === 0) return outcome;
  if (nicks.length > MAX_NICKS) {
    const why = `at most ${MAX_NICKS} recipients per call (describe says so)`;
    throw adapterError('invalid-request', 'batch-size', why);
  }
  const buyers = nicks.map(({ nick }) => nick).join(',');
  const call = topCall(url, SEND_METHOD, [['coupon_id', request.coupon], ['buyer_nick', buyers]]);
  // No idempotency key: a lost answer may hide an issued coupon, so it is `unknown`.
  const answer = readAnswer(http(call), SEND_METHOD, 'unknown');
  // A call that failed as a whole fails the whole request with its error.
  if (answer.error !== undefined) throw answer.error;
  if (answer.requestId !== undefined) outcome.platformRequestIds.push(answer.requestId);

  // REPLACE: reading the platform's success answer.
  const issued = list(answer.response, 'coupon_results', 'coupon_result');
  const refused = list(answer.response, 'failure_buyers', 'error_message');
  for (const { recipient, nick } of nicks) {
    const names = (entry) => entry?.buyer_nick === nick;
    const got = issued.find(names);
    const not = refused.find(names);
    if (got !== undefined) {
      outcome.issued.push({ recipient, couponId: text(got.coupon_number) });
    } else if (not !== undefined) {
      const reason = text(not.reason) ?? 'no reason given';
      fail(recipient, adapterError(failureClass(reason), 'failure_buyers', reason));
    } else {
      // The platform answered but did not name this buyer: maybe issued, maybe not. Never guess
      // "failed" here: the host would send again.
      const why = "the platform's answer does not name this recipient";
      fail(recipient, adapterError('unknown', 'not-reported', why));
    }
  }
  return outcome;
}

/** `request` is the contract's query-request; returns its list of coupons. */
export function queryCoupons(request, settings, http) {
  if (request.recipient.tag !== 'nick') {
    throw adapterError('invalid-request', 'recipient', `${QUERY_METHOD} looks up nicks only`);
  }
  const url = gateway(request.options, settings);
  const call = topCall(url, QUERY_METHOD, [['buyer_nick', request.recipient.val]]);
  // A read is safe to repeat: a lost answer is `transient`.
  const answer = readAnswer(http(call), QUERY_METHOD, 'transient');
  if (answer.error !== undefined) throw answer.error;
  // Never answer "no coupons" for a failure: the host would take it as "not there" and send.
  if (answer.response.is_success === false) {
    throw adapterError('transient', 'not-success', 'is_success is false');
  }
  // REPLACE: the platform's coupon records. Amounts in fen, times in unix seconds UTC (BigInt).
  return list(answer.response, 'coupons', 'coupon_info_do').map((item) => ({
    id: text(item?.id) ?? '',
    templateId: text(item?.template_id),
    title: text(item?.title),
    state: item?.status === 1 ? 'held' : item?.status === 0 ? 'claimable' : 'unknown',
    amountFen: yuanToFen(item?.amount),
    thresholdFen: yuanToFen(item?.start_fee),
    validFrom: gmt8ToUnix(item?.start_time),
    validUntil: gmt8ToUnix(item?.end_time),
    claimUrl: text(item?.apply_url),
  }));
}

/**
 * REPLACE: reads one call's answer as `{ requestId, response }` (the API's response object) or
 * `{ requestId, error }`. `lost` is the class of an answer that never arrived whole (a timeout, a
 * garbled body): `unknown` for a send without an idempotency key, which may have been applied.
 */
export function readAnswer(answer, method, lost) {
  if (answer.err !== undefined) {
    const { tag, val } = answer.err;
    let errorClass = 'transient'; // connect: nothing reached the platform; other
    if (tag === 'timeout' || tag === 'too-large') errorClass = lost;
    else if (tag === 'denied') errorClass = 'invalid-request';
    else if (tag === 'unauthorized') errorClass = 'unauthorized';
    return { error: adapterError(errorClass, `http.${tag}`, val ?? tag) };
  }
  const { status, body } = answer.ok;
  if (status < 200 || status > 299) {
    const errorClass = status === 429 ? 'rate-limited' : 'transient';
    const why = `the gateway answered HTTP ${status}`;
    return { error: adapterError(errorClass, `http.${status}`, why) };
  }
  const json = bodyJson(body);
  // A TOP error: {"error_response": {"code", "msg", "sub_code", "sub_msg", "request_id"}}.
  const topError = json?.error_response;
  if (topError !== null && typeof topError === 'object') {
    const code = Number(topError.code);
    const subCode = text(topError.sub_code) ?? '';
    const message = [topError.msg, topError.sub_msg].filter((m) => typeof m === 'string').join(': ');
    const error = adapterError(topErrorClass(code, subCode), subCode || code, message);
    return { requestId: text(topError.request_id), error };
  }
  // A success is wrapped as `<method without "taobao.", dots as _>_response`.
  const key = `${method.replace(/^taobao\./, '').replaceAll('.', '_')}_response`;
  const response = json?.[key];
  if (response === null || typeof response !== 'object' || Array.isArray(response)) {
    const why = `HTTP ${status} without ${key} or error_response`;
    return { error: adapterError(lost, 'unexpected-answer', why) };
  }
  return { requestId: text(response.request_id), response };
}

/** REPLACE: the platform's error codes as the host's classes (TOP's, in short). */
function topErrorClass(code, subCode) {
  if (subCode.includes('limited-by')) return 'rate-limited';
  if (subCode.startsWith('isp.')) return 'transient';
  if (code >= 4 && code <= 8) return 'rate-limited'; // call limits
  if (code === 10) return 'transient'; // service unavailable
  // The seller's session expired: the host refreshes it and retries once.
  if (code === 27 || code === 44) return 'auth-expired';
  // Wrong app key or secret, no session, or no permission.
  if ([11, 12, 13, 25, 26, 28, 29, 53].includes(code)) return 'unauthorized';
  if (subCode === 'isv.coupon-error') return 'coupon-unavailable';
  return 'invalid-request';
}

/** REPLACE: why one buyer of a send got nothing (the platform's words). */
function failureClass(reason) {
  const says = (words) => words.some((word) => reason.includes(word));
  if (says(['优惠券不存在', '过期', '已发完'])) return 'coupon-unavailable';
  if (says(['超过', '上限', '限制'])) return 'recipient-limit';
  return 'recipient-invalid';
}

/**
 * The largest and deepest body read as JSON. TOP's answers are a few KiB, a few levels deep; the
 * host hands over up to limits.max_response_kib (4 MiB by default), and the engine would run out
 * of the instance's memory (limits.memory_mib) parsing that much, or 100 000 nested `[`: the call
 * would be killed and its recipients left unknown, instead of failing as a bad answer.
 */
const MAX_JSON_BYTES = 1 << 20;
const MAX_JSON_DEPTH = 64;

/** The body as JSON, or undefined when it is not UTF-8 JSON, or too large or too deep. */
function bodyJson(body) {
  if (body.length > MAX_JSON_BYTES) return undefined;
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (const byte of body) {
    if (inString) {
      if (escaped) escaped = false;
      else if (byte === 0x5c) escaped = true; // backslash
      else if (byte === 0x22) inString = false; // quote
    } else if (byte === 0x22) inString = true;
    else if (byte === 0x5b || byte === 0x7b) {
      depth += 1;
      if (depth > MAX_JSON_DEPTH) return undefined;
    } else if (byte === 0x5d || byte === 0x7d) depth -= 1;
  }
  try {
    // Numbers beyond 2^53 come out rounded: compare long ids as text.
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    return undefined;
  }
}

/** The items of a TOP list field: {field: {item: [...]}}, or {field: [...]} with `simplify`. */
function list(response, field, item) {
  const value = response?.[field];
  const items = value?.[item] ?? value;
  return Array.isArray(items) ? items : [];
}

/** A string or a number as text (platforms send ids as either); undefined otherwise. */
function text(value) {
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (typeof value === 'string' && value.trim() !== '') return value.trim();
  return undefined;
}

/** Yuan (10, "9.5", "0.01") to fen, exactly, as a BigInt; anything else is undefined. */
export function yuanToFen(value) {
  const match = /^([0-9]+)(?:\.([0-9]{1,2}))?$/.exec(text(value) ?? '');
  if (match === null) return undefined;
  return BigInt(match[1]) * 100n + BigInt((match[2] ?? '').padEnd(2, '0'));
}

/** `yyyy-MM-dd HH:mm:ss` in GMT+8 (TOP's time format) to unix seconds, as a BigInt. */
export function gmt8ToUnix(value) {
  const match = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(text(value) ?? '');
  if (match === null) return undefined;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number);
  const millis = Date.UTC(year, month - 1, day, hour, minute, second);
  return Number.isFinite(millis) ? BigInt(millis / 1000 - 8 * 3600) : undefined;
}
