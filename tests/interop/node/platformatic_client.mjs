// Drives @platformatic/kafka (from npm) against ktb for the interop tests
// (tests/interop/platformatic.rs). Its Admin class has no delegation-token calls, so this
// opens the package's own Connection (SaslHandshake v1, then SCRAM over SaslAuthenticate v2)
// and sends the package's protocol-level requests over it (SPEC §8.3).
//
// Usage: node platformatic_client.mjs BOOTSTRAP MECHANISM USER PASSWORD ACTION [ARGS...]
// ACTION is one of:
//   login                                   log in, print Metadata v12 (brokers, controller, cluster)
//   create [OWNER|-] [RENEWERS|-] [MAX_MS]  CreateDelegationToken v3; OWNER and the comma-separated
//                                           RENEWERS are User principals; MAX_MS defaults to -1
//   describe [null|[]|NAMES]                DescribeDelegationToken v3; null owners, an empty array,
//                                           or comma-separated User names (default null)
//   renew HMAC_B64 PERIOD_MS                RenewDelegationToken v2
//   expire HMAC_B64 PERIOD_MS               ExpireDelegationToken v2 (PERIOD_MS may be -1)
//   token-create                            log in (with a token id and base64 HMAC, D-1), read
//                                           Metadata, then try CreateDelegationToken
//   add-user NAME PASSWORD                  AlterUserScramCredentials v0: SCRAM-SHA-256, then
//                                           SCRAM-SHA-512 (8192 iterations), one request each
//   describe-users [null|NAMES]             DescribeUserScramCredentials v0 (default null)
// Prints one JSON object on stdout and exits 0. Timestamps are numbers and HMACs standard base64.
// A response carrying an error code prints its decoded body (errorCode included); any other
// failure, a failed login among them, prints {"error": <class>, "code": <Kafka code or null>,
// "message", "causes": [<class>...], "serverMessage"}.
import { pbkdf2Sync, randomBytes } from 'node:crypto'
import {
  alterUserScramCredentialsV0,
  Connection,
  createDelegationTokenV3,
  describeDelegationTokenV3,
  describeUserScramCredentialsV0,
  expireDelegationTokenV2,
  metadataV12,
  renewDelegationTokenV2,
  ResponseError
} from '@platformatic/kafka'

const [bootstrap, mechanism, username, password, action, ...args] = process.argv.slice(2)

const users = list => (list && list !== '-' ? list.split(',').map(name => ({ principalType: 'User', principalName: name })) : [])
const hmacOf = base64 => Buffer.from(base64, 'base64')
const b64 = bytes => Buffer.from(bytes).toString('base64')

function createBody (r) {
  return {
    errorCode: r.errorCode,
    principalType: r.principalType,
    principalName: r.principalName,
    tokenRequesterPrincipalType: r.tokenRequesterPrincipalType,
    tokenRequesterPrincipalName: r.tokenRequesterPrincipalName,
    issueTimestampMs: Number(r.issueTimestampMs),
    expiryTimestampMs: Number(r.expiryTimestampMs),
    maxTimestampMs: Number(r.maxTimestampMs),
    tokenId: r.tokenId,
    hmac: b64(r.hmac)
  }
}

function describeBody (r) {
  const tokens = r.tokens.map(t => ({
    principalType: t.principalType,
    principalName: t.principalName,
    tokenRequesterPrincipalType: t.tokenRequesterPrincipalType,
    tokenRequesterPrincipalName: t.tokenRequesterPrincipalName,
    issueTimestamp: Number(t.issueTimestamp),
    expiryTimestamp: Number(t.expiryTimestamp),
    maxTimestamp: Number(t.maxTimestamp),
    tokenId: t.tokenId,
    hmac: b64(t.hmac),
    renewers: t.renewers.map(p => ({ principalType: p.principalType, principalName: p.principalName }))
  }))
  return { errorCode: r.errorCode, tokens }
}

const expiryBody = r => ({ errorCode: r.errorCode, expiryTimestampMs: Number(r.expiryTimestampMs) })

// Sends one request; a nonzero error code makes the package throw a ResponseError that holds
// the decoded body, which is what the tests check.
async function call (api, connection, ...requestArgs) {
  try {
    return await api.async(connection, ...requestArgs)
  } catch (err) {
    if (err instanceof ResponseError && err.response) return err.response
    throw err
  }
}

async function login () {
  const connection = new Connection('ktb-interop-platformatic', {
    sasl: { mechanism, username, password },
    connectTimeout: 5000,
    requestTimeout: 10000
  })
  connection.on('error', () => {}) // surfaced through connect() and the request callbacks
  const at = bootstrap.lastIndexOf(':')
  await connection.connect(bootstrap.slice(0, at), Number(bootstrap.slice(at + 1)))
  return connection
}

async function metadata (connection) {
  const m = await metadataV12.api.async(connection, [], false, false)
  const brokers = m.brokers.map(b => ({ nodeId: b.nodeId, host: b.host, port: b.port }))
  return { ok: true, brokers, controllerId: m.controllerId, clusterId: m.clusterId }
}

async function run (connection) {
  switch (action) {
    case 'login':
      return metadata(connection)
    case 'create': {
      const [owner, renewers, maxLifetimeMs = '-1'] = args
      const named = owner && owner !== '-'
      const r = await call(createDelegationTokenV3.api, connection, named ? 'User' : null, named ? owner : null,
        users(renewers), BigInt(maxLifetimeMs))
      return createBody(r)
    }
    case 'describe': {
      const owners = args[0] === undefined || args[0] === 'null' ? null : args[0] === '[]' ? [] : users(args[0])
      return describeBody(await call(describeDelegationTokenV3.api, connection, owners))
    }
    case 'renew':
      return expiryBody(await call(renewDelegationTokenV2.api, connection, hmacOf(args[0]), BigInt(args[1])))
    case 'expire':
      return expiryBody(await call(expireDelegationTokenV2.api, connection, hmacOf(args[0]), BigInt(args[1])))
    case 'token-create': {
      await metadata(connection)
      const r = await call(createDelegationTokenV3.api, connection, null, null, [], -1n)
      return { metadataOk: true, createErrorCode: r.errorCode }
    }
    case 'add-user': {
      // Like Kafka's Admin client, the client salts the password itself and sends SaltedPassword.
      const [name, userPassword] = args
      const results = []
      for (const [mechanism, hash, length] of [[1, 'sha256', 32], [2, 'sha512', 64]]) {
        const salt = randomBytes(16)
        const saltedPassword = pbkdf2Sync(userPassword, salt, 8192, length, hash)
        const r = await call(alterUserScramCredentialsV0.api, connection, [],
          [{ name, mechanism, iterations: 8192, salt, saltedPassword }])
        results.push(...r.results.map(u => ({ user: u.user, errorCode: u.errorCode, errorMessage: u.errorMessage })))
      }
      return { results }
    }
    case 'describe-users': {
      const names = args[0] === undefined || args[0] === 'null' ? null : args[0].split(',').map(name => ({ name }))
      const r = await call(describeUserScramCredentialsV0.api, connection, names)
      const results = r.results.map(u => ({
        user: u.user,
        errorCode: u.errorCode,
        errorMessage: u.errorMessage,
        credentialInfos: u.credentialInfos.map(c => ({ mechanism: c.mechanism, iterations: c.iterations }))
      }))
      return { errorCode: r.errorCode, errorMessage: r.errorMessage, results }
    }
    default:
      throw new Error(`unknown action ${action}`)
  }
}

// Walks the cause chain (NetworkError -> AuthenticationError -> ResponseError for a failed
// login) and reports the first Kafka error code found.
function describeError (err) {
  const causes = []
  let code = null
  let serverMessage = null
  for (let e = err; e; e = e.cause) {
    causes.push(e.constructor?.name ?? typeof e)
    const protocolError = e.errors?.find(p => p?.apiCode !== undefined)
    if (code === null && protocolError) {
      code = protocolError.apiCode
      serverMessage = protocolError.serverErrorMessage ?? null
    }
  }
  return { error: causes[0], code, message: String(err?.message ?? err), causes, serverMessage }
}

function print (value) {
  process.stdout.write(JSON.stringify(value) + '\n', () => process.exit(0))
}

let connection = null
try {
  connection = await login()
  const result = await run(connection)
  await connection.close()
  print(result)
} catch (err) {
  connection?.close().catch(() => {})
  print(describeError(err))
}
