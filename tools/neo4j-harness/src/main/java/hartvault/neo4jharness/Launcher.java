package hartvault.neo4jharness;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilders;

/**
 * Starts a real Neo4j Community server for hartvault's Go tests and prints its Bolt URI.
 *
 * <pre>
 * serve --work DIR            in-process server of neo4j-harness (Neo4jBuilders.newInProcessBuilder)
 *                             in a fresh directory under DIR; auth off.
 * serve --home DIR            a DBMS whose home is DIR (data in DIR/data, as neo4j-admin expects),
 *                             with a control port that stops and starts it without ending the JVM,
 *                             so that neo4j-admin can dump and load it while it is stopped.
 * control HOST:PORT stop|start
 *                             asks a --home launcher to stop or start its DBMS; exits 0 once done.
 * </pre>
 *
 * The server prints "BOLT bolt://127.0.0.1:PORT" once it accepts connections (and, with --home,
 * "CONTROL 127.0.0.1:PORT" before it), then runs until its standard input closes.
 */
public final class Launcher {
    private Launcher() {}

    public static void main(String[] args) throws Exception {
        if (args.length >= 1 && args[0].equals("serve")) {
            serve(args);
            return;
        }
        if (args.length == 3 && args[0].equals("control")) {
            System.exit(control(args[1], args[2]));
        }
        System.err.println("usage: serve (--work DIR | --home DIR) | control HOST:PORT stop|start");
        System.exit(2);
    }

    private static void serve(String[] args) throws Exception {
        Path work = null;
        Path home = null;
        for (int i = 1; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--work" -> work = Path.of(args[i + 1]);
                case "--home" -> home = Path.of(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        if (home != null) {
            serveHome(home);
        } else {
            serveHarness(work != null ? work : Files.createTempDirectory("neo4j-harness"));
        }
    }

    private static void serveHarness(Path work) throws Exception {
        Files.createDirectories(work);
        Neo4j neo4j = Neo4jBuilders.newInProcessBuilder(work)
                .withDisabledServer()
                .withConfig(GraphDatabaseSettings.pagecache_memory, 64L << 20)
                .build();
        Runtime.getRuntime().addShutdownHook(new Thread(neo4j::close));
        System.out.println("BOLT " + neo4j.boltURI());
        System.out.flush();
        waitForStdinEOF();
        neo4j.close();
        System.exit(0);
    }

    /** A DBMS in a fixed home directory, stopped and started on request. */
    private static final class HomeServer {
        private final Path home;
        private final int boltPort;
        private DatabaseManagementService dbms;

        HomeServer(Path home, int boltPort) {
            this.home = home;
            this.boltPort = boltPort;
        }

        synchronized void start() {
            if (dbms != null) {
                return;
            }
            dbms = new DatabaseManagementServiceBuilder(home)
                    .setConfig(BoltConnector.enabled, true)
                    .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", boltPort))
                    .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                    .setConfig(HttpConnector.enabled, false)
                    .setConfig(GraphDatabaseSettings.auth_enabled, false)
                    .setConfig(GraphDatabaseSettings.pagecache_memory, 64L << 20)
                    // a test's stop should not wait out idle Bolt connections
                    .setConfig(GraphDatabaseSettings.shutdown_transaction_end_timeout, Duration.ofSeconds(1))
                    .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                    .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(2))
                    .build();
            dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).isAvailable(TimeUnit.MINUTES.toMillis(2));
        }

        synchronized void stop() {
            if (dbms != null) {
                dbms.shutdown();
                dbms = null;
            }
        }

        String boltURI() {
            return "bolt://127.0.0.1:" + boltPort;
        }
    }

    private static void serveHome(Path home) throws Exception {
        Files.createDirectories(home.resolve("conf"));
        Path conf = home.resolve("conf").resolve("neo4j.conf");
        if (!Files.exists(conf)) {
            Files.writeString(conf, "# written by hartvault's neo4j-harness launcher\n", StandardCharsets.UTF_8);
        }
        int boltPort;
        try (ServerSocket probe = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            boltPort = probe.getLocalPort();
        }
        HomeServer server = new HomeServer(home, boltPort);
        server.start();
        Runtime.getRuntime().addShutdownHook(new Thread(server::stop));

        ServerSocket control = new ServerSocket(0, 4, InetAddress.getLoopbackAddress());
        Thread controller = new Thread(() -> controlLoop(control, server), "control");
        controller.setDaemon(true);
        controller.start();
        System.out.println("CONTROL 127.0.0.1:" + control.getLocalPort());
        System.out.println("BOLT " + server.boltURI());
        System.out.flush();
        waitForStdinEOF();
        server.stop();
        System.exit(0);
    }

    private static void controlLoop(ServerSocket control, HomeServer server) {
        while (true) {
            try (Socket s = control.accept();
                    BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
                    PrintWriter out = new PrintWriter(s.getOutputStream(), true, StandardCharsets.UTF_8)) {
                String cmd = in.readLine();
                try {
                    if ("stop".equals(cmd)) {
                        server.stop();
                        out.println("ok stopped");
                    } else if ("start".equals(cmd)) {
                        server.start();
                        out.println("ok started " + server.boltURI());
                    } else {
                        out.println("error unknown command " + cmd);
                    }
                } catch (RuntimeException e) {
                    out.println("error " + e);
                }
            } catch (IOException e) {
                System.err.println("control: " + e);
            }
        }
    }

    private static int control(String address, String cmd) throws IOException {
        int colon = address.lastIndexOf(':');
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(address.substring(0, colon), Integer.parseInt(address.substring(colon + 1))), 10_000);
            PrintWriter out = new PrintWriter(s.getOutputStream(), true, StandardCharsets.UTF_8);
            BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
            out.println(cmd);
            String reply = in.readLine();
            System.out.println(reply);
            return reply != null && reply.startsWith("ok") ? 0 : 1;
        }
    }

    private static void waitForStdinEOF() throws IOException {
        byte[] buf = new byte[256];
        while (System.in.read(buf) >= 0) {
            // the Go test holds our stdin; it closes when the test (or its process) ends
        }
    }
}
