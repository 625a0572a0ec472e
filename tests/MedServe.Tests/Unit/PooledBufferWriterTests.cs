using System.Text.Json;
using MedServe.Inference.Packages;
using MedServe.Inference.Runtime;
using MedServe.Protocol;
using MedServe.Tests.Support;

namespace MedServe.Tests.Unit;

/// <summary>The pooled response buffer, and a session's warm-up on load.</summary>
public sealed class PooledBufferWriterTests
{
    [Fact]
    public void A_response_larger_than_the_first_buffer_keeps_every_byte_across_growth()
    {
        using var writer = new PooledBufferWriter(256);
        var expected = new List<byte>();
        var random = new Random(7);
        for (var i = 0; i < 200; i++)
        {
            // Mixed: spans asked for with and without a size hint, as Utf8JsonWriter and BuffersExtensions.Write ask.
            var chunk = new byte[random.Next(1, 3000)];
            random.NextBytes(chunk);
            var span = writer.GetSpan(i % 2 == 0 ? chunk.Length : 0);
            var n = Math.Min(span.Length, chunk.Length);
            chunk.AsSpan(0, n).CopyTo(span);
            writer.Advance(n);
            expected.AddRange(chunk.AsSpan(0, n).ToArray());
        }
        Assert.Equal(expected.ToArray(), writer.WrittenMemory.ToArray());
        Assert.Throws<InvalidOperationException>(() => writer.Advance(writer.GetSpan().Length + 1));
    }

    [Fact]
    public void A_json_answer_written_through_it_reads_back_whole()
    {
        using var writer = new PooledBufferWriter(256);
        var values = Enumerable.Range(0, 70_000).Select(i => (float)i).ToArray(); // a 256x256 mask's worth and more
        var response = new InferenceResponse("m", "1", [TensorTypes.Create<float>("mask", [1, values.Length], values)]);
        Assert.Null(V2Codec.WriteResponse(response, new V2OutputOptions(false, new HashSet<string>()), writer));
        using var json = JsonDocument.Parse(writer.WrittenMemory);
        var data = json.RootElement.GetProperty("outputs")[0].GetProperty("data");
        Assert.Equal(values.Length, data.GetArrayLength());
        Assert.Equal(69_999, data[69_999].GetSingle());
    }

    [Theory]
    [InlineData("breast-cancer-logreg", true)]
    [InlineData("ct-mr-classifier", true)]
    [InlineData("ct-bone-segmenter", false)] // height and width are dynamic: no shape to warm with
    public void A_session_warms_up_on_zeros_when_its_shapes_are_known(string sample, bool warmed)
    {
        var package = ModelPackage.FromDirectory(Path.Combine(Paths.Samples, sample));
        using var model = OnnxModel.Load(package.Model, package.Manifest, new RuntimeOptions { Accelerator = "cpu" });
        Assert.Equal(warmed, model.WarmUp(8));
    }
}
