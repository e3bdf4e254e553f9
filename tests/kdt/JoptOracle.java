// The oracle for tests/kdt.rs: the options of Apache Kafka's kafka-delegation-tokens tool
// (names, argument kinds, types and descriptions, as DelegationTokenCommand and
// CommandDefaultOptions declare them), given to the real jopt-simple library, the option
// parser of Kafka's tools (Debian's libjoptsimple-java 5.0.4, Kafka's version).
//
//   java JoptOracle help            prints the library's option table (printHelpOn)
//   java JoptOracle parse ARGS...   prints "parsed", or the message of the library's
//                                   OptionException for ARGS
import joptsimple.OptionException;
import joptsimple.OptionParser;

public class JoptOracle {
    public static void main(String[] args) throws Exception {
        OptionParser parser = new OptionParser(false);
        parser.accepts("help", "Print usage information.").forHelp();
        parser.accepts("version", "Display Kafka version.").forHelp();
        parser.accepts("bootstrap-server", "REQUIRED: server(s) to use for bootstrapping.")
            .withRequiredArg().ofType(String.class);
        parser.accepts("command-config", "REQUIRED: A property file containing configs to be passed to Admin"
                + " Client. Token management operations are allowed in secure mode only. This config file is"
                + " used to pass security related configs.")
            .withRequiredArg().ofType(String.class);
        parser.accepts("create", "Create a new delegation token. Use --renewer-principal option to pass renewer"
                + " principals.");
        parser.accepts("renew", "Renew delegation token. Use --renew-time-period option to set renew time period.");
        parser.accepts("expire", "Expire delegation token. Use --expiry-time-period option to expire the token.");
        parser.accepts("describe", "Describe delegation tokens for the given principals. Use --owner-principal to"
                + " pass owner/renewer principals. If --owner-principal option is not supplied, all the"
                + " user-owned tokens and tokens where the user has Describe permissions will be returned.");
        parser.accepts("owner-principal", "owner is a Kafka principal. They should be in principalType:name format.")
            .withOptionalArg().ofType(String.class);
        parser.accepts("renewer-principal", "renewer is a Kafka principal. They should be in principalType:name"
                + " format.")
            .withOptionalArg().ofType(String.class);
        parser.accepts("max-life-time-period", "Max life period for the token in milliseconds. If the value is -1,"
                + " then token max life time will default to the server side config value of"
                + " (delegation.token.max.lifetime.ms).")
            .withOptionalArg().ofType(Long.class);
        parser.accepts("renew-time-period", "Renew time period in milliseconds. If the value is -1, then the renew"
                + " time period will default to the server side config value of (delegation.token.expiry.time.ms).")
            .withOptionalArg().ofType(Long.class);
        parser.accepts("expiry-time-period", "Expiry time period in milliseconds. If the value is -1, then the token"
                + " will get invalidated immediately.")
            .withOptionalArg().ofType(Long.class);
        parser.accepts("hmac", "HMAC of the delegation token").withOptionalArg().ofType(String.class);

        if (args.length == 1 && args[0].equals("help")) {
            parser.printHelpOn(System.out);
            return;
        }
        String[] rest = java.util.Arrays.copyOfRange(args, 1, args.length);
        try {
            parser.parse(rest);
            System.out.println("parsed");
        } catch (OptionException e) {
            System.out.println(e.getMessage());
        }
    }
}
