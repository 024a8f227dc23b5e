// Unit tests of the mapping (`node --test`, or `npm test`): scripted answers, no host needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as api from '../src/api.js';

const settings = (key) => (key === 'gateway' ? 'https://gw.example/router/rest' : undefined);
const answer = (status, body) => ({ ok: { status, headers: [], body: new TextEncoder().encode(body) } });
const request = (nicks) => ({
  account: 'default',
  coupon: '48552',
  recipients: nicks.map((nick) => ({ tag: 'nick', val: nick })),
  quantity: 1,
  idempotencyKey: 'key',
  options: [],
});

test('every recipient ends once', () => {
  const body = JSON.stringify({
    promotion_coupon_sns_send_response: {
      request_id: 'r1',
      coupon_results: { coupon_result: [{ coupon_number: 7, buyer_nick: '张三' }] },
      failure_buyers: { error_message: [{ buyer_nick: '李四', reason: '买家不存在' }] },
    },
  });
  const calls = [];
  const outcome = api.sendCoupon(request(['张三', '李四', '王五', '张三']), settings, (call) => {
    calls.push(call);
    return answer(200, body);
  });
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0].params.at(-1), ['buyer_nick', '张三,李四,王五']);
  assert.deepEqual(outcome.issued, [{ recipient: { tag: 'nick', val: '张三' }, couponId: '7' }]);
  // The repeat, the refused buyer, and the one the answer does not name.
  assert.deepEqual(
    outcome.failed.map((f) => f.error.class),
    ['invalid-request', 'recipient-invalid', 'unknown'],
  );
  assert.deepEqual(outcome.platformRequestIds, ['r1']);
});

test('errors are classified', () => {
  const top = (code, subCode) => {
    const body = JSON.stringify({ error_response: { code, sub_code: subCode } });
    return api.readAnswer(answer(200, body), api.SEND_METHOD, 'unknown').error.class;
  };
  assert.equal(top(7, ''), 'rate-limited');
  assert.equal(top(25, ''), 'unauthorized');
  assert.equal(top(27, 'invalid-sessionkey'), 'auth-expired');
  assert.equal(top(15, 'isv.coupon-error'), 'coupon-unavailable');
  const lost = (reply) => api.readAnswer(reply, api.SEND_METHOD, 'unknown').error.class;
  assert.equal(lost({ err: { tag: 'timeout' } }), 'unknown');
  assert.equal(lost(answer(502, '')), 'transient');
  assert.equal(lost(answer(200, '<html>')), 'unknown');
  assert.equal(lost(answer(200, '['.repeat(100_000))), 'unknown');
});

test('amounts and times', () => {
  assert.equal(api.yuanToFen(10), 1000n);
  assert.equal(api.yuanToFen('9.5'), 950n);
  assert.equal(api.yuanToFen('x'), undefined);
  assert.equal(api.gmt8ToUnix('2020-01-01 08:00:00'), 1_577_836_800n);
  assert.equal(api.gmt8ToUnix('2020-01-01'), undefined);
});
