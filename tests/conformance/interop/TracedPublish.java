// A traced Java client (Pulsar's Java client, binary protocol) publishing one message: run with the
// OpenTelemetry Java agent, whose Pulsar instrumentation makes the `publish` span and writes its
// context into the message's properties (traceparent), as traced Java producers do.
//   java -javaagent:opentelemetry-javaagent.jar -cp <classes>:<pulsar jars>/* TracedPublish SERVICE_URL TOPIC TEXT
// Prints the message id. Test-only (tests/conformance/test_tracing_interop.py).
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;

public final class TracedPublish {
  public static void main(String[] args) throws Exception {
    try (PulsarClient client = PulsarClient.builder().serviceUrl(args[0])
            .operationTimeout(15, TimeUnit.SECONDS).build();
        Producer<String> producer = client.newProducer(Schema.STRING).topic(args[1]).create()) {
      MessageId id = producer.newMessage().value(args[2]).property("origin", "java").send();
      System.out.println(id);
    }
  }
}
