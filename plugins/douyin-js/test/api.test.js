// Unit tests of the douyin-js mapping (`node --test`), with the Rust douyin adapter's fixtures
// (the seed page's examples), so both adapters are held to the same answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import * as api from '../src/api.js';

const fixture = (name) =>
  readFileSync(new URL(`../../douyin/fixtures/${name}`, import.meta.url), 'utf8');

const APP_ID = 'ttec789ac573xxxxxx01';
const ACTIVITY = '721807xxxxxx5644204';
const KEY = 'ch-0123456789abcdef0123456789abcdef';
const SEED_OPEN_ID = 'ba253642-0590-40bc-xxx';
/** hex(sha256(KEY + "\n" + SEED_OPEN_ID))[..32], as the Rust adapter's tests have it. */
const SEED_MERCHANT_ID = '6ea87a567cc39d6db54acc821177f801';

const SEND_SEED = fixture('send_seed.json');
const SEND_ERROR_SEED = fixture('send_error_seed.json');
const SEND_MESSY = fixture('send_messy.json');
const SEND_TOKEN_INVALID = fixture('send_token_invalid.json');
const SEND_ACTIVITY_ENDED = fixture('send_activity_ended.json');
const SEND_USER_LIMIT = fixture('send_user_limit.json');
const SEND_HTML = fixture('send_html.html');
const QUERY_LIST = fixture('query_list.json');
const QUERY_MESSY = fixture('query_messy.json');

const settings = (key) => (key === 'app_id' ? APP_ID : undefined);

const answer = (status, body, headers = []) => ({
  ok: { status, headers, body: new TextEncoder().encode(body) },
});
const ok = (body) => answer(200, body);
const errNo = (code) => ok(JSON.stringify({ err_no: code, err_msg: '', log_id: `log-${code}` }));
const issuedBody = (couponId) =>
  ok(
    JSON.stringify({
      err_no: 0,
      err_msg: '',
      log_id: `log-${couponId}`,
      data: { coupon_info: { coupon_id: couponId, discount_amount: 1000 } },
    }),
  );

const openId = (val) => ({ tag: 'open-id', val });
const openIds = (ids) => ids.map(openId);
const request = (recipients, extra = {}) => ({
  coupon: ACTIVITY,
  recipients,
  quantity: 1,
  idempotencyKey: KEY,
  options: [],
  ...extra,
});

/** Runs a send against scripted answers; resolves to { result | error, calls }. */
async function send(req, answers) {
  const calls = [];
  const script = [...answers];
  const http = (call) => {
    calls.push(call);
    return script.shift() ?? { err: { tag: 'other', val: 'no scripted answer' } };
  };
  try {
    const result = await api.sendCoupon(req, settings, http);
    assertEveryRecipientOnceInOrder(req, result);
    return { result, calls };
  } catch (error) {
    assert.ok(api.isAdapterError(error), `threw a non-adapter error: ${error}`);
    return { error, calls };
  }
}

function query(recipient, reply) {
  const calls = [];
  const http = (call) => {
    calls.push(call);
    return reply;
  };
  try {
    return { result: api.queryCoupons(recipient, [], settings, http), calls };
  } catch (error) {
    assert.ok(api.isAdapterError(error), `threw a non-adapter error: ${error}`);
    return { error, calls };
  }
}

/** The contract's invariant: each recipient is issued or failed exactly once, in order. */
function assertEveryRecipientOnceInOrder(req, outcome) {
  const key = (r) => `${r.tag}:${r.val}`;
  for (const list of [outcome.issued, outcome.failed]) {
    let at = 0;
    for (const { recipient } of list) {
      while (at < req.recipients.length && req.recipients[at] !== recipient) at++;
      assert.ok(at < req.recipients.length, 'request order');
      at++;
    }
  }
  const all = [...outcome.issued, ...outcome.failed].map((e) => key(e.recipient)).sort();
  assert.deepEqual(all, req.recipients.map(key).sort(), 'every recipient exactly once');
}

const failure = (outcome, id) => {
  const found = outcome.failed.find((f) => f.recipient.val === id);
  assert.ok(found, `${id} did not fail`);
  return found.error;
};
const body = (call) => JSON.parse(new TextDecoder().decode(call.body));

test('describes the adapter like the Rust one', () => {
  assert.deepEqual(api.INFO, {
    platform: 'douyin',
    version: '0.1.0',
    maxRecipientsPerCall: 20,
    idempotentSend: true,
    recipientKinds: ['open-id'],
    operations: ['send-coupon', 'query-coupons'],
    authScheme: 'douyin',
    limits: { qps: 100 },
  });
});

test('settings: app_id is required, base_url defaults and loses its slash, options win', () => {
  assert.throws(() => api.resolveConfig([], () => undefined), (e) => e.code === 'config');
  assert.throws(
    () => api.resolveConfig([['app_id', '  ']], settings),
    (e) => e.code === 'config' && e.message.includes('app_id'),
  );
  assert.deepEqual(api.resolveConfig([], settings), {
    baseUrl: 'https://open.douyin.com',
    appId: APP_ID,
  });
  const config = api.resolveConfig(
    [
      ['base_url', 'http://x'],
      ['base_url', 'http://127.0.0.1:9000//'],
      ['app_id', 'tt-only-option'],
    ],
    settings,
  );
  assert.deepEqual(config, { baseUrl: 'http://127.0.0.1:9000', appId: 'tt-only-option' });
  for (const bad of ['ftp://x', 'http://', 'open.douyin.com']) {
    assert.throws(
      () => api.resolveConfig([['base_url', bad]], settings),
      (e) => e.code === 'config',
      bad,
    );
  }
});

test('merchant_coupon_id is the documented digest, suffixed per unit', async () => {
  assert.equal(await api.merchantCouponId(KEY, SEED_OPEN_ID, 1), SEED_MERCHANT_ID);
  assert.equal(await api.merchantCouponId('k', 'u1', 1), 'caf960bfaf766d7225b29998eafb68cc');
  assert.equal(await api.merchantCouponId('k', 'u2', 1), '38e469aa9b1bd431b6ed6f91394d5332');
  assert.notEqual(await api.merchantCouponId('ab', 'c', 1), await api.merchantCouponId('a', 'bc', 1));
  assert.equal(await api.merchantCouponId(KEY, SEED_OPEN_ID, 2), `${SEED_MERCHANT_ID}-2`);
  assert.equal(await api.merchantCouponId(KEY, SEED_OPEN_ID, 10), `${SEED_MERCHANT_ID}-10`);
});

test('a send is exactly the documented call', async () => {
  const { calls } = await send(request(openIds([SEED_OPEN_ID]), { coupon: `  ${ACTIVITY} ` }), [
    ok(SEND_SEED),
  ]);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url, `https://open.douyin.com${api.SEND_PATH}`);
  assert.deepEqual(calls[0].headers, [['content-type', 'application/json']]);
  assert.equal(
    new TextDecoder().decode(calls[0].body),
    `{"activity_id":"${ACTIVITY}","app_id":"${APP_ID}","open_id":"${SEED_OPEN_ID}","merchant_coupon_id":"${SEED_MERCHANT_ID}"}`,
  );
});

test('the request itself is refused without a call when it is wrong', async () => {
  for (const [extra, code] of [
    [{ quantity: 0 }, 'quantity'],
    [{ quantity: 11 }, 'quantity'],
    [{ coupon: '  ' }, 'coupon'],
    [{ idempotencyKey: ' ' }, 'idempotency-key'],
  ]) {
    const { error, calls } = await send(request(openIds(['u1']), extra), []);
    assert.deepEqual([error.class, error.code, calls.length], ['invalid-request', code, 0]);
  }
});

test('the seed success issues the coupon info', async () => {
  const { result } = await send(request(openIds([SEED_OPEN_ID])), [ok(SEND_SEED)]);
  assert.deepEqual(result, {
    issued: [
      {
        recipient: openId(SEED_OPEN_ID),
        coupon: {
          couponId: '70924xxxx555366',
          name: '奶茶立减10元券',
          amountFen: 1000n,
          thresholdFen: 2000n,
          validFrom: 1_685_686_441n,
          validUntil: 1_685_772_841n,
        },
        extraCouponIds: [],
      },
    ],
    failed: [],
    requestIds: ['20230602141441E708D3A77C64701C88EB'],
  });
});

test('the X-Tt-Logid header joins the request ids once', async () => {
  const { result } = await send(request(openIds(['u1', 'u2'])), [
    answer(200, SEND_SEED, [['X-Tt-Logid', 'header-log-1']]),
    answer(200, SEND_SEED, [['x-tt-logid', '20230602141441E708D3A77C64701C88EB']]),
  ]);
  assert.deepEqual(result.requestIds, [
    '20230602141441E708D3A77C64701C88EB',
    'header-log-1',
    '20230602141441E708D3A77C64701C88EB',
  ]);
  assert.deepEqual(api.readAnswer(answer(502, SEND_HTML, [['X-TT-LOGID', ' hdr ']])).logIds, [
    'hdr',
  ]);
});

test('the seed error is rate-limited for the whole request, with no further call', async () => {
  const { error, calls } = await send(request(openIds(['u1', 'u2', 'u3'])), [ok(SEND_ERROR_SEED)]);
  assert.deepEqual(error, {
    class: 'rate-limited',
    code: '29005012',
    message: '尝试过于频繁 (log_id 20230602111931B8431F7C63978600E24C)',
    retryAfterMs: 1000,
  });
  assert.equal(calls.length, 1);
});

test('rate-limited after an issue fails the rest uncalled', async () => {
  const { result, calls } = await send(request(openIds(['u1', 'u2', 'u3', 'u4'])), [
    ok(SEND_SEED),
    ok(SEND_ERROR_SEED),
  ]);
  assert.equal(calls.length, 2);
  assert.equal(result.issued.length, 1);
  for (const id of ['u2', 'u3', 'u4']) {
    const error = failure(result, id);
    assert.deepEqual([error.class, error.code, error.retryAfterMs], ['rate-limited', '29005012', 1000]);
  }
  assert.ok(
    failure(result, 'u3').message.startsWith('not sent because an earlier call failed: 尝试过于频繁'),
  );
});

test('auth errors stop the request', async () => {
  const { error, calls } = await send(request(openIds(['u1', 'u2'])), [ok(SEND_TOKEN_INVALID)]);
  assert.deepEqual(
    [error.class, error.code, error.message, calls.length],
    ['auth-expired', '28001003', 'access_token无效 (log_id 202405291440576E078D8757B9)', 1],
  );
  const { result } = await send(request(openIds(['u0', 'u1', 'u2'])), [
    ok(SEND_SEED),
    errNo(28001014),
  ]);
  assert.equal(failure(result, 'u2').class, 'unauthorized');
});

test('recipient errors fail only that recipient', async () => {
  const { result, calls } = await send(request(openIds(['u1', 'u2', 'u3', 'u4'])), [
    ok(SEND_USER_LIMIT),
    errNo(29005004),
    ok(SEND_SEED),
    errNo(28001005),
  ]);
  assert.equal(calls.length, 4);
  const limit = failure(result, 'u1');
  assert.deepEqual(
    [limit.class, limit.code, limit.message],
    ['recipient-limit', '29005003', '用户领券已达上限 (log_id sim-user-limit)'],
  );
  assert.equal(failure(result, 'u2').class, 'recipient-invalid');
  assert.ok(failure(result, 'u2').message.includes('7 days'));
  assert.deepEqual(result.issued[0].recipient, openId('u3'));
  assert.equal(failure(result, 'u4').class, 'transient');
});

test('an activity gone or out of stock fails the rest uncalled', async () => {
  for (const [reply, code] of [
    [ok(SEND_ACTIVITY_ENDED), '29005001'],
    [errNo(29005002), '29005002'],
  ]) {
    const req = request(openIds(['u1', 'u2', 'u3']));
    const first = await send(req, [reply]);
    assert.equal(first.calls.length, 1);
    assert.ok(
      first.result.failed.every((f) => f.error.class === 'coupon-unavailable' && f.error.code === code),
    );
    const later = await send(req, [ok(SEND_SEED), reply]);
    assert.deepEqual([later.calls.length, later.result.issued.length], [2, 1]);
    assert.equal(failure(later.result, 'u3').class, 'coupon-unavailable');
  }
});

test('invalid params fail the request on the first call, one recipient later', async () => {
  const first = await send(request(openIds(['u1', 'u2'])), [errNo(28001007)]);
  assert.deepEqual(
    [first.error.class, first.error.code, first.error.message, first.calls.length],
    ['invalid-request', '28001007', '参数不合法 (log_id log-28001007)', 1],
  );
  const later = await send(request(openIds(['u1', 'u2', 'u3'])), [
    ok(SEND_SEED),
    errNo(28001007),
    ok(SEND_SEED),
  ]);
  assert.deepEqual([later.calls.length, later.result.issued.length], [3, 2]);
  assert.equal(failure(later.result, 'u2').code, '28001007');
});

test('unknown codes fail the recipient as unknown', async () => {
  const { result } = await send(request(openIds(['u1', 'u2'])), [errNo(29999999), ok(SEND_SEED)]);
  const error = failure(result, 'u1');
  assert.deepEqual(
    [error.class, error.code, error.message],
    ['unknown', '29999999', 'err_no 29999999 without a message (log_id log-29999999)'],
  );
});

test('every known code has its class, and too-frequent ones a retry hint', () => {
  for (const [code, errorClass] of api.KNOWN_CODES) {
    const error = api.platformError(BigInt(code), '', undefined);
    assert.deepEqual([error.class, error.code], [errorClass, String(code)]);
    assert.notEqual(error.message, '');
    const retry = code === 29005012 || code === 28003018 ? 1000 : undefined;
    assert.equal(error.retryAfterMs, retry, String(code));
  }
  assert.equal(api.classify(1n), 'unknown');
});

test('signed-http failures are classified; transport failures stop the request', async () => {
  const cases = [
    [{ tag: 'denied', val: 'not allowed' }, 'invalid-request', 'http.denied'],
    [{ tag: 'connect', val: 'refused' }, 'transient', 'http.connect'],
    [{ tag: 'timeout' }, 'transient', 'http.timeout'],
    [{ tag: 'unauthorized', val: 'token refused' }, 'unauthorized', 'http.unauthorized'],
    [{ tag: 'other', val: 'token fetch failed' }, 'transient', 'http.other'],
  ];
  for (const [err, errorClass, code] of cases) {
    const first = await send(request(openIds(['u1', 'u2'])), [{ err }]);
    assert.deepEqual([first.error.class, first.error.code, first.calls.length], [errorClass, code, 1]);
    const later = await send(request(openIds(['u0', 'u1', 'u2'])), [ok(SEND_SEED), { err }]);
    assert.equal(later.calls.length, 2);
    assert.ok(later.result.failed.every((f) => f.error.code === code));
  }
  const tooLarge = await send(request(openIds(['u1', 'u2'])), [{ err: { tag: 'too-large' } }, ok(SEND_SEED)]);
  assert.deepEqual([tooLarge.calls.length, tooLarge.result.issued.length], [2, 1]);
  assert.equal(failure(tooLarge.result, 'u1').code, 'http.too-large');
});

test('HTTP statuses and HTML bodies are transient per recipient; 429 is rate-limited', async () => {
  const { result } = await send(request(openIds(['u1', 'u2', 'u3', 'u4'])), [
    answer(502, SEND_HTML),
    answer(500, SEND_SEED),
    ok(SEND_HTML),
    ok(''),
  ]);
  assert.deepEqual(
    result.failed.map((f) => [f.error.code, f.error.class]),
    [
      ['http.502', 'transient'],
      ['http.500', 'transient'],
      ['bad-response', 'transient'],
      ['bad-response', 'transient'],
    ],
  );
  assert.ok(failure(result, 'u3').message.includes('502 Bad Gateway'));
  assert.ok(failure(result, 'u4').message.includes('(empty body)'));
  assert.deepEqual(result.requestIds, ['20230602141441E708D3A77C64701C88EB']);
  assert.equal(
    failure(result, 'u2').message,
    'the Douyin open API answered HTTP 500 (log_id 20230602141441E708D3A77C64701C88EB)',
  );
  const limited = api.readAnswer(answer(429, '')).error;
  assert.deepEqual([limited.class, limited.code, limited.retryAfterMs], ['rate-limited', 'http.429', 1000]);
});

test('messy success answers still issue', async () => {
  const { result } = await send(request(openIds(['u1', 'u2', 'u3', 'u4'])), [
    ok(SEND_MESSY),
    ok('{"err_no":0,"log_id":"no-data"}'),
    ok('{"err_no":0.0,"data":{"coupon_info":"not an object"}}'),
    ok('{"err_no":0,"data":[1,2,3]}'),
  ]);
  assert.equal(result.failed.length, 0);
  assert.deepEqual(result.issued[0].coupon, {
    couponId: '7092400000555366',
    name: '奶茶立减10元券',
    amountFen: 1000n,
    thresholdFen: 2000n,
    validFrom: 1_685_686_441n,
    validUntil: 1_685_772_841n,
  });
  const empty = {
    couponId: undefined,
    name: undefined,
    amountFen: undefined,
    thresholdFen: undefined,
    validFrom: undefined,
    validUntil: undefined,
  };
  for (const issued of result.issued.slice(1)) assert.deepEqual(issued.coupon, empty);
  assert.deepEqual(result.requestIds, ['messy-send-1', 'no-data']);
});

test('envelope variants: err_tips, string codes, the data.error_code envelope, no code', () => {
  let error = api.readAnswer(ok('{"err_no":"29005004","err_tips":"用户不满足条件","log_id":"L"}')).error;
  assert.deepEqual(
    [error.class, error.code, error.message],
    ['recipient-invalid', '29005004', '用户不满足条件 (log_id L)'],
  );
  error = api.readAnswer(
    ok('{"data":{"error_code":28001008,"description":"token expired"},"message":"error"}'),
  ).error;
  assert.deepEqual([error.class, error.code, error.message], ['auth-expired', '28001008', 'token expired']);
  const { data } = api.readAnswer(ok('{"data":{"error_code":0,"coupon_info":{"coupon_id":"x"}}}'));
  assert.equal(api.parseCouponInfo(data).couponId, 'x');
  for (const text of ['{"log_id":"L"}', '{"err_no":"abc"}', '{"err_no":null,"data":{}}', '[]', '42', '"text"', 'null', '{']) {
    error = api.readAnswer(ok(text)).error;
    assert.deepEqual([error.class, error.code], ['transient', 'bad-response'], text);
  }
});

test('long or binary bodies make short messages', () => {
  const { message } = api.readAnswer(ok('x'.repeat(10_000))).error;
  assert.ok(Array.from(message).length < 200, message);
  const binary = { ok: { status: 200, headers: [], body: new Uint8Array([0xff, 0xfe, 0x00, 0x80]) } };
  assert.equal(api.readAnswer(binary).error.code, 'bad-response');
});

test('answers too large or too deeply nested to be Douyin\'s are bad responses, not parsed', () => {
  const padded = JSON.stringify({ err_no: 0, log_id: 'L', data: {}, padding: ' '.repeat(2 << 20) });
  const deep = '['.repeat(100_000) + ']'.repeat(100_000);
  for (const text of [padded, deep]) {
    const { error } = api.readAnswer(ok(text));
    assert.deepEqual([error.class, error.code], ['transient', 'bad-response']);
    assert.ok(Array.from(error.message).length < 200, error.message);
  }
  // Brackets inside strings do not count, and Douyin's own depth is read.
  const bracketed = JSON.stringify({ err_no: 0, log_id: 'L', data: { text: '['.repeat(1000) } });
  assert.equal(api.readAnswer(ok(bracketed)).error, undefined);
});

test('quantity sends one call per unit, with suffixed ids', async () => {
  const req = request(openIds(['u1', 'u2']), { quantity: 3 });
  const { result, calls } = await send(req, ['a1', 'a2', 'a3', 'b1', 'b2', 'b3'].map(issuedBody));
  const u1 = await api.merchantCouponId(KEY, 'u1', 1);
  const u2 = await api.merchantCouponId(KEY, 'u2', 1);
  assert.deepEqual(
    calls.map((c) => [body(c).open_id, body(c).merchant_coupon_id]),
    [
      ['u1', u1],
      ['u1', `${u1}-2`],
      ['u1', `${u1}-3`],
      ['u2', u2],
      ['u2', `${u2}-2`],
      ['u2', `${u2}-3`],
    ],
  );
  assert.equal(result.issued[0].coupon.couponId, 'a1');
  assert.deepEqual(result.issued[0].extraCouponIds, ['a2', 'a3']);
  assert.deepEqual(result.issued[1].extraCouponIds, ['b2', 'b3']);
  assert.equal(result.requestIds.length, 6);
});

test('a unit failing fails the recipient and says what was issued', async () => {
  const req = request(openIds(['u1', 'u2']), { quantity: 3 });
  const { result, calls } = await send(req, [
    issuedBody('a1'),
    issuedBody('a2'),
    ok(SEND_USER_LIMIT),
    issuedBody('b1'),
    issuedBody('b2'),
    issuedBody('b3'),
  ]);
  assert.equal(calls.length, 6);
  const error = failure(result, 'u1');
  assert.equal(error.class, 'recipient-limit');
  assert.ok(error.message.includes('2 of 3 coupons were issued to this recipient (coupon_id a1, a2)'));
  assert.deepEqual(result.issued[0].recipient, openId('u2'));
});

test('a request-wide error after a unit is an outcome, not an error', async () => {
  const req = request(openIds(['u1', 'u2']), { quantity: 2 });
  const { result, calls } = await send(req, [issuedBody('a1'), ok(SEND_ERROR_SEED)]);
  assert.equal(calls.length, 2);
  assert.equal(result.issued.length, 0);
  assert.ok(failure(result, 'u1').message.includes('1 of 2'));
  assert.ok(failure(result, 'u2').message.startsWith('not sent because'));
});

test('recipients no call can carry are refused, and do not count as the first call', async () => {
  const req = request([
    { tag: 'nick', val: '张三' },
    openId(' '),
    openId('u1'),
    { tag: 'customer-id', val: 'c1' },
    openId('u1'),
    openId('u2'),
  ]);
  const { result, calls } = await send(req, [ok(SEND_SEED), ok(SEND_SEED)]);
  assert.deepEqual(calls.map((c) => body(c).open_id), ['u1', 'u2']);
  assert.deepEqual(
    result.failed.map((f) => f.error.code),
    ['recipient-kind', 'recipient-empty', 'recipient-kind', 'recipient-duplicate'],
  );
  const refusedFirst = await send(request([{ tag: 'nick', val: 'n' }, openId('u1')]), [
    errNo(28001007),
  ]);
  assert.equal(refusedFirst.error.code, '28001007');
  const none = await send(request([]), []);
  assert.deepEqual(none.result, { issued: [], failed: [], requestIds: [] });
  assert.equal(none.calls.length, 0);
});

test('a query is exactly the documented call and maps the receive list', () => {
  const { result, calls } = query(openId('u1'), ok(QUERY_LIST));
  assert.equal(calls[0].url, `https://open.douyin.com${api.QUERY_PATH}`);
  assert.deepEqual(body(calls[0]), { app_id: APP_ID, open_id: 'u1', coupon_status: 10 });
  assert.deepEqual(result, [
    {
      id: '70924xxxx555366',
      templateId: undefined,
      title: '奶茶立减10元券',
      state: 'held',
      amountFen: 1000n,
      thresholdFen: 2000n,
      validFrom: 1_685_686_441n,
      validUntil: 1_685_772_841n,
      claimUrl: undefined,
    },
  ]);
});

test('a query tolerates messy items', () => {
  const { result } = query(openId('u1'), ok(QUERY_MESSY));
  assert.deepEqual(
    result.map((c) => [c.id, c.state, c.title, c.amountFen, c.thresholdFen, c.validFrom, c.validUntil]),
    [
      ['123456789', 'used', undefined, 500n, undefined, 1_685_686_441n, 1_685_772_841n],
      ['c-expired', 'expired', undefined, undefined, undefined, undefined, undefined],
      ['c-odd', 'unknown', undefined, undefined, undefined, undefined, undefined],
      ['', 'unknown', 'no id, no status', undefined, undefined, undefined, undefined],
    ],
  );
  for (const text of ['{"err_no":0}', '{"err_no":0,"data":null}', '{"err_no":0,"data":{"coupon_receive_list":{}}}']) {
    assert.deepEqual(query(openId('u1'), ok(text)).result, [], text);
  }
});

test('query errors are classified and the recipient checked first', () => {
  const limited = query(openId('u1'), ok(SEND_ERROR_SEED)).error;
  assert.deepEqual([limited.class, limited.retryAfterMs], ['rate-limited', 1000]);
  assert.equal(query(openId('u1'), answer(503, '')).error.code, 'http.503');
  for (const [recipient, code] of [
    [openId('  '), 'recipient-empty'],
    [{ tag: 'nick', val: 'n' }, 'recipient-kind'],
  ]) {
    const { error, calls } = query(recipient, ok(QUERY_LIST));
    assert.deepEqual([error.code, calls.length], [code, 0]);
  }
});

test('numbers come as numbers or strings', () => {
  const cases = [
    [0, 0n],
    [-5, -5n],
    [2000.0, 2000n],
    [1.5, undefined],
    ['42', 42n],
    [' 42 ', 42n],
    ['+7', 7n],
    ['2000.0', 2000n],
    ['1e3', 1000n],
    ['9223372036854775807', 9223372036854775807n],
    [9223372036854775807n, 9223372036854775807n],
    ['9223372036854775808', undefined],
    ['abc', undefined],
    ['', undefined],
    [null, undefined],
    [true, undefined],
    [Number.POSITIVE_INFINITY, undefined],
    [{}, undefined],
  ];
  for (const [value, expected] of cases) assert.equal(api.asI64(value), expected, String(value));
});
