using System.Buffers;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using MedServe.Protocol;

namespace MedServe.Micro;

/// <summary>
/// The V2 codec on the requests and responses the two sample models see: breast-cancer-logreg (one row of 30 FP32
/// features, JSON) and ct-mr-classifier (one 1x1x64x64 FP32 slice, JSON and the binary tensor extension). Bodies are
/// built once, as a client would send them (floats in their shortest round-trip form); responses go into one reused
/// buffer, so what is allocated is the codec's own.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 5)]
public class CodecBenchmarks
{
    private byte[] _logregJson = [];
    private byte[] _cnnJson = [];
    private byte[] _cnnBinary = [];
    private int _cnnHeaderLength;
    private InferenceResponse _logregResponse = null!;
    private InferenceResponse _cnnResponse = null!;
    private readonly V2OutputOptions _jsonOutputs = new(false, new HashSet<string>());
    private readonly ArrayBufferWriter<byte> _destination = new(64 * 1024);

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(20261207);
        _logregJson = JsonRequest("input", [1, 30], Values(random, 30, 0, 30));
        var image = Values(random, 64 * 64, -1, 1);
        _cnnJson = JsonRequest("image", [1, 1, 64, 64], image);
        (_cnnBinary, _cnnHeaderLength) = BinaryRequest("image", [1, 1, 64, 64], image);

        _logregResponse = new InferenceResponse("breast-cancer-logreg", "1",
            [TensorTypes.Create<float>("probabilities", [1, 2], [0.0123456f, 0.9876544f]), TensorTypes.Create<float>("logits", [1, 2], [-2.1972246f, 2.1972246f])], "r-1", 0.0412)
        { QueueMilliseconds = 0.0051, BatchSize = 1, Replica = "breast-cancer-logreg/1/0" };
        _cnnResponse = new InferenceResponse("ct-mr-classifier", "1",
            [TensorTypes.Create<float>("logits", [1, 2], [3.4512787f, -3.1290522f])], "r-2", 1.2734)
        { QueueMilliseconds = 0.0093, BatchSize = 1, Replica = "ct-mr-classifier/1/0" };

        // The bodies must parse: a benchmark of a failing parse would measure the error path.
        _ = ParseLogregJson();
        _ = ParseCnnJson();
        _ = ParseCnnBinary();
    }

    [Benchmark]
    public InferenceRequest ParseLogregJson() => V2Codec.ParseRequest(_logregJson, null).Request;

    [Benchmark]
    public InferenceRequest ParseCnnJson() => V2Codec.ParseRequest(_cnnJson, null).Request;

    [Benchmark]
    public InferenceRequest ParseCnnBinary() => V2Codec.ParseRequest(_cnnBinary, _cnnHeaderLength).Request;

    [Benchmark]
    public int WriteLogregResponse()
    {
        _destination.ResetWrittenCount();
        V2Codec.WriteResponse(_logregResponse, _jsonOutputs, _destination);
        return _destination.WrittenCount;
    }

    [Benchmark]
    public int WriteCnnResponse()
    {
        _destination.ResetWrittenCount();
        V2Codec.WriteResponse(_cnnResponse, _jsonOutputs, _destination);
        return _destination.WrittenCount;
    }

    private static float[] Values(Random random, int count, float min, float max) =>
        [.. Enumerable.Range(0, count).Select(_ => min + ((float)random.NextDouble() * (max - min)))];

    private static byte[] JsonRequest(string name, long[] shape, float[] data)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("id", "bench-1");
            writer.WriteStartArray("inputs");
            writer.WriteStartObject();
            writer.WriteString("name", name);
            writer.WriteString("datatype", "FP32");
            writer.WritePropertyName("shape");
            JsonSerializer.Serialize(writer, shape);
            writer.WriteStartArray("data");
            foreach (var v in data)
            {
                writer.WriteNumberValue(v);
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static (byte[] Body, int HeaderLength) BinaryRequest(string name, long[] shape, float[] data)
    {
        var header = JsonSerializer.SerializeToUtf8Bytes(new
        {
            id = "bench-1",
            inputs = new[] { new { name, datatype = "FP32", shape, parameters = new { binary_data_size = data.Length * 4 } } },
        });
        var body = new byte[header.Length + (data.Length * 4)];
        header.CopyTo(body, 0);
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()).CopyTo(body.AsSpan(header.Length));
        return (body, header.Length);
    }
}
