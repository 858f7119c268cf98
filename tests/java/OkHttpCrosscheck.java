// Real OkHttp, configured the way the DashScope Java SDK's OkHttpClientFactory configures it,
// driven line by line from Python so that dashnb's claims of "Java-equivalent" pooling can be
// checked against the library they imitate.
//
//   javac -cp okhttp.jar:okio.jar -d OUT OkHttpCrosscheck.java
//   java -cp okhttp.jar:okio.jar:OUT OkHttpCrosscheck BASE_URL CA_PEM \
//        connectMs readMs writeMs idleMs poolSize maxRequests maxRequestsPerHost
//
// The API key comes on stdin as the first line (never on the command line, where `ps` shows it).
// Then one command per line, one JSON object per line in reply:
//   shared N [URL]   N sequential blocking calls (Call.execute) on the one shared client
//   per_client N     N sequential blocking calls, each on a new client built the same way
//   threads N [URL]  N threads, each one blocking call at the same time (execute)
//   async N [URL]    N calls enqueued at once (Call.enqueue, the Dispatcher's path); waits for all
//   pool             the shared client's ConnectionPool counts
//   quit
// URL overrides the base URL for that command (e.g. a port that never answers a connect).
//
// Only the JDK and OkHttp 3.x / Okio 1.x are used, so it compiles against Debian's
// libokhttp-java without Kotlin or a JSON library.

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.Proxy;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;
import okhttp3.Call;
import okhttp3.Callback;
import okhttp3.Connection;
import okhttp3.ConnectionPool;
import okhttp3.Dispatcher;
import okhttp3.EventListener;
import okhttp3.Interceptor;
import okhttp3.MediaType;
import okhttp3.OkHttpClient;
import okhttp3.Protocol;
import okhttp3.Request;
import okhttp3.RequestBody;
import okhttp3.Response;

public final class OkHttpCrosscheck {
  // What the Java SDK's OkHttpHttpClient sends for a native text-generation call.
  private static final MediaType JSON = MediaType.parse("application/json; charset=utf-8");
  private static final String PATH = "/services/aigc/text-generation/generation";
  private static final String BODY =
      "{\"model\":\"qwen-plus\",\"parameters\":{\"result_format\":\"message\"},"
          + "\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}";

  private final String baseUrl;
  private final String apiKey;
  private final X509TrustManager trust;
  private final SSLContext ssl;
  private final long connectMs, readMs, writeMs, idleMs;
  private final int poolSize, maxRequests, maxRequestsPerHost;
  private final OkHttpClient shared;

  // Client-side facts, counted through OkHttp's own hooks.
  private final AtomicInteger inFlight = new AtomicInteger();
  private final AtomicInteger peakInFlight = new AtomicInteger();
  private final AtomicInteger connects = new AtomicInteger();

  private OkHttpCrosscheck(String[] a, String apiKey) throws Exception {
    this.baseUrl = a[0];
    this.apiKey = apiKey;
    this.trust = trustOnly(a[1]);
    this.ssl = SSLContext.getInstance("TLS");
    this.ssl.init(null, new TrustManager[] {trust}, null);
    this.connectMs = Long.parseLong(a[2]);
    this.readMs = Long.parseLong(a[3]);
    this.writeMs = Long.parseLong(a[4]);
    this.idleMs = Long.parseLong(a[5]);
    this.poolSize = Integer.parseInt(a[6]);
    this.maxRequests = Integer.parseInt(a[7]);
    this.maxRequestsPerHost = Integer.parseInt(a[8]);
    this.shared = build();
  }

  /** A client built as OkHttpClientFactory.createInstance builds the SDK's one client. */
  private OkHttpClient build() {
    Dispatcher dispatcher = new Dispatcher();
    dispatcher.setMaxRequests(maxRequests);
    dispatcher.setMaxRequestsPerHost(maxRequestsPerHost);
    // The SDK hands OkHttp Duration.getSeconds() of the idle timeout: whole seconds, truncated.
    long idleSeconds = Duration.ofMillis(idleMs).getSeconds();
    return new OkHttpClient.Builder()
        .connectTimeout(Duration.ofMillis(connectMs))
        .readTimeout(Duration.ofMillis(readMs))
        .writeTimeout(Duration.ofMillis(writeMs))
        .dispatcher(dispatcher)
        .protocols(Collections.singletonList(Protocol.HTTP_1_1))
        .connectionPool(new ConnectionPool(poolSize, idleSeconds, TimeUnit.SECONDS))
        // Not in the SDK: the emulator's CA is trusted explicitly, and only it.
        .sslSocketFactory(ssl.getSocketFactory(), trust)
        // Not in the SDK: observation only (counts, no behaviour).
        .addInterceptor(this::countInFlight)
        .eventListener(
            new EventListener() {
              @Override
              public void connectStart(Call call, InetSocketAddress addr, Proxy proxy) {
                connects.incrementAndGet();
              }
            })
        .build();
  }

  /**
   * Application interceptors run once the Dispatcher has admitted an enqueued call (and at once
   * for execute()), so this counts calls past the Dispatcher; the count drops when the body has
   * been read (see call()).
   */
  private Response countInFlight(Interceptor.Chain chain) throws IOException {
    int now = inFlight.incrementAndGet();
    peakInFlight.accumulateAndGet(now, Math::max);
    try {
      return chain.proceed(chain.request());
    } catch (IOException | RuntimeException e) {
      inFlight.decrementAndGet();
      throw e;
    }
  }

  private static X509TrustManager trustOnly(String pemPath) throws Exception {
    CertificateFactory cf = CertificateFactory.getInstance("X.509");
    KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
    ks.load(null, null);
    try (InputStream in = new FileInputStream(pemPath)) {
      int i = 0;
      for (java.security.cert.Certificate c : cf.generateCertificates(in)) {
        ks.setCertificateEntry("ca" + i++, (X509Certificate) c);
      }
    }
    TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    tmf.init(ks);
    for (TrustManager tm : tmf.getTrustManagers()) {
      if (tm instanceof X509TrustManager) return (X509TrustManager) tm;
    }
    throw new IllegalStateException("no X509TrustManager");
  }

  private Request request(String base) {
    return new Request.Builder()
        .url(base + PATH)
        .header("Authorization", "Bearer " + apiKey)
        .header("Accept", "application/json; charset=utf-8")
        .post(RequestBody.create(JSON, BODY))
        .build();
  }

  /** One call's outcome: seconds from start to body read (or to the failure) and what failed. */
  private static final class Outcome {
    final double seconds;
    final int status;
    final String error;

    Outcome(double seconds, int status, String error) {
      this.seconds = seconds;
      this.status = status;
      this.error = error;
    }
  }

  private static String describe(Throwable t) {
    return t.getClass().getName();
  }

  private Outcome execute(OkHttpClient client, String base) {
    long t0 = System.nanoTime();
    Response r = null;
    try {
      r = client.newCall(request(base)).execute();
      r.body().string();
      return new Outcome((System.nanoTime() - t0) / 1e9, r.code(), null);
    } catch (IOException | RuntimeException e) {
      return new Outcome((System.nanoTime() - t0) / 1e9, 0, describe(e));
    } finally {
      if (r != null) {
        r.close();
        inFlight.decrementAndGet();
      }
    }
  }

  private List<Outcome> shared(int n, String base) {
    List<Outcome> out = new ArrayList<>();
    for (int i = 0; i < n; i++) out.add(execute(shared, base));
    return out;
  }

  private List<Outcome> perClient(int n, String base) {
    List<Outcome> out = new ArrayList<>();
    for (int i = 0; i < n; i++) out.add(execute(build(), base));
    return out;
  }

  private List<Outcome> threads(int n, String base) throws InterruptedException {
    List<Outcome> out = Collections.synchronizedList(new ArrayList<>());
    CountDownLatch start = new CountDownLatch(1);
    List<Thread> ts = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      Thread t =
          new Thread(
              () -> {
                try {
                  start.await();
                } catch (InterruptedException e) {
                  return;
                }
                out.add(execute(shared, base));
              });
      t.start();
      ts.add(t);
    }
    start.countDown();
    for (Thread t : ts) t.join();
    return out;
  }

  private List<Outcome> async(int n, String base) throws InterruptedException {
    List<Outcome> out = Collections.synchronizedList(new ArrayList<>());
    CountDownLatch done = new CountDownLatch(n);
    for (int i = 0; i < n; i++) {
      final long t0 = System.nanoTime();
      shared
          .newCall(request(base))
          .enqueue(
              new Callback() {
                @Override
                public void onFailure(Call call, IOException e) {
                  out.add(new Outcome((System.nanoTime() - t0) / 1e9, 0, describe(e)));
                  done.countDown();
                }

                @Override
                public void onResponse(Call call, Response r) {
                  // The SDK's callback reads the body inside onResponse, so the Dispatcher slot
                  // is held until then; so is it here.
                  try (Response closing = r) {
                    closing.body().string();
                    out.add(new Outcome((System.nanoTime() - t0) / 1e9, r.code(), null));
                  } catch (IOException e) {
                    out.add(new Outcome((System.nanoTime() - t0) / 1e9, 0, describe(e)));
                  } finally {
                    inFlight.decrementAndGet();
                    done.countDown();
                  }
                }
              });
    }
    done.await();
    return out;
  }

  private String run(String line) throws Exception {
    String[] w = line.trim().split("\\s+");
    String cmd = w[0];
    if (cmd.equals("pool")) {
      ConnectionPool p = shared.connectionPool();
      return "{\"cmd\":\"pool\",\"connections\":" + p.connectionCount() + ",\"idle\":" + p.idleConnectionCount() + "}";
    }
    int n = Integer.parseInt(w[1]);
    String base = w.length > 2 ? w[2] : baseUrl;
    peakInFlight.set(0);
    int connectsBefore = connects.get();
    long t0 = System.nanoTime();
    List<Outcome> outs;
    switch (cmd) {
      case "shared":
        outs = shared(n, base);
        break;
      case "per_client":
        outs = perClient(n, base);
        break;
      case "threads":
        outs = threads(n, base);
        break;
      case "async":
        outs = async(n, base);
        break;
      default:
        throw new IllegalArgumentException("unknown command " + cmd);
    }
    double elapsed = (System.nanoTime() - t0) / 1e9;
    int ok = 0;
    double failMin = Double.NaN, failMax = Double.NaN;
    Map<String, Integer> errors = new TreeMap<>();
    for (Outcome o : outs) {
      if (o.error == null && o.status == 200) {
        ok++;
      } else {
        String key = o.error != null ? o.error : "HTTP " + o.status;
        errors.merge(key, 1, Integer::sum);
        failMin = Double.isNaN(failMin) ? o.seconds : Math.min(failMin, o.seconds);
        failMax = Double.isNaN(failMax) ? o.seconds : Math.max(failMax, o.seconds);
      }
    }
    StringBuilder sb = new StringBuilder();
    sb.append("{\"cmd\":\"").append(cmd).append("\",\"n\":").append(n);
    sb.append(",\"ok\":").append(ok);
    sb.append(",\"elapsed_s\":").append(num(elapsed));
    sb.append(",\"fail_min_s\":").append(num(failMin));
    sb.append(",\"fail_max_s\":").append(num(failMax));
    sb.append(",\"peak_in_flight\":").append(peakInFlight.get());
    sb.append(",\"connects\":").append(connects.get() - connectsBefore);
    sb.append(",\"errors\":{");
    boolean first = true;
    for (Map.Entry<String, Integer> e : errors.entrySet()) {
      if (!first) sb.append(',');
      first = false;
      sb.append('"').append(e.getKey()).append("\":").append(e.getValue());
    }
    sb.append("}}");
    return sb.toString();
  }

  private static String num(double v) {
    return Double.isNaN(v) ? "null" : String.format(java.util.Locale.ROOT, "%.4f", v);
  }

  public static void main(String[] args) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    OkHttpCrosscheck x = new OkHttpCrosscheck(args, in.readLine().trim());
    System.out.println(
        "{\"ready\":true,\"okhttp\":\"" + okhttp3.internal.Version.userAgent() + "\",\"java\":\""
            + System.getProperty("java.version") + "\"}");
    System.out.flush();
    String line;
    while ((line = in.readLine()) != null) {
      if (line.trim().isEmpty()) continue;
      if (line.trim().equals("quit")) break;
      String reply;
      try {
        reply = x.run(line);
      } catch (Exception e) {
        reply = "{\"cmd_error\":\"" + describe(e) + "\"}";
      }
      System.out.println(reply);
      System.out.flush();
    }
    // OkHttp's threads are daemons except the dispatcher's idle workers; do not wait 60 s for them.
    System.exit(0);
  }
}
