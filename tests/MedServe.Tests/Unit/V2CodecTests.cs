using System.Buffers;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Protocol;

namespace MedServe.Tests.Unit;

public sealed class V2CodecTests
{
    private static InferenceRequest Parse(string json) => V2Codec.ParseRequest(Encoding.UTF8.GetBytes(json), null).Request;

    [Fact]
    public void Nested_and_flat_data_give_the_same_buffer()
    {
        var flat = Parse("""{"inputs":[{"name":"x","datatype":"INT64","shape":[2,2],"data":[1,2,3,4]}]}""");
        var nested = Parse("""{"inputs":[{"name":"x","datatype":"INT64","shape":[2,2],"data":[[1,2],[3,4]]}]}""");
        Assert.Equal(flat.Inputs[0].Data, nested.Inputs[0].Data);
        Assert.Equal([1L, 2, 3, 4], flat.Inputs[0].AsSpan<long>().ToArray());
    }

    [Fact]
    public void Fields_may_come_in_any_order_and_the_id_is_kept()
    {
        var request = Parse("""{"inputs":[{"data":[true,false],"shape":[2],"datatype":"BOOL","name":"b"}],"id":"r1","outputs":[{"name":"y"}]}""");
        Assert.Equal("r1", request.Id);
        Assert.Equal([(byte)1, (byte)0], request.Inputs[0].Data);
        Assert.Equal(["y"], request.RequestedOutputs!);
    }

    [Theory]
    [InlineData("UINT8", "256")]
    [InlineData("INT32", "2147483648")]
    [InlineData("INT64", "1.5")]
    [InlineData("BOOL", "1")]
    [InlineData("FP32", "1e39")]
    public void Out_of_range_values_are_refused(string datatype, string value)
    {
        var e = Assert.Throws<MedServeException>(() => Parse($$"""{"inputs":[{"name":"x","datatype":"{{datatype}}","shape":[1],"data":[{{value}}]}]}"""));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains($"not a valid {datatype} value", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_shape_the_body_cannot_fill_is_refused_before_allocating()
    {
        var e = Assert.Throws<MedServeException>(() => Parse("""{"inputs":[{"name":"x","datatype":"FP64","shape":[268435455],"data":[1]}]}"""));
        Assert.Contains("the body is only", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_binary_data_size_that_is_not_a_number_is_invalid_input()
    {
        var e = Assert.Throws<MedServeException>(() => V2Codec.ParseRequest(
            Encoding.UTF8.GetBytes("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":"4"}}]}"""), null));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
    }

    [Fact]
    public void Binary_outputs_follow_the_json_header()
    {
        var response = new InferenceResponse("m", "1", [TensorTypes.Create<float>("y", [2], [1f, 2f]), TensorTypes.Create<int>("z", [1], [7])], "id");
        var buffer = new ArrayBufferWriter<byte>();
        var headerLength = V2Codec.WriteResponse(response, new V2OutputOptions(false, new HashSet<string> { "y" }), buffer);
        Assert.NotNull(headerLength);
        var json = JsonNode.Parse(buffer.WrittenSpan[..headerLength.Value])!;
        Assert.Equal(8, json["outputs"]![0]!["parameters"]!["binary_data_size"]!.GetValue<int>());
        Assert.Equal(7, json["outputs"]![1]!["data"]![0]!.GetValue<int>());
        Assert.Equal(headerLength.Value + 8, buffer.WrittenCount);
        Assert.Equal(2f, BitConverter.ToSingle(buffer.WrittenSpan[(headerLength.Value + 4)..]));
    }

    [Fact]
    public void A_tensor_name_that_is_not_utf8_is_invalid_input_naming_where_not_the_bytes()
    {
        var head = Encoding.UTF8.GetBytes("""{"inputs":[{"name":"in""");
        var tail = Encoding.UTF8.GetBytes("""put","datatype":"FP32","shape":[1],"data":[1]}]}""");
        byte[] body = [.. head, 0xff, 0xfe, .. tail];
        var e = Assert.Throws<MedServeException>(() => V2Codec.ParseRequest(body, null));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("not valid UTF-8", e.Message, StringComparison.Ordinal);
        Assert.Contains($"byte {head.Length + 1}", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\ufffd', e.Message);
    }

    [Fact]
    public void Tensors_over_the_element_limit_are_too_large_before_allocating()
    {
        // 2^40 elements: far past anything allocatable; the limit answers first, naming the input and the limit.
        var e = Assert.Throws<MedServeException>(() => V2Codec.ParseRequest(
            Encoding.UTF8.GetBytes("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1048576,1048576],"data":[1]}]}"""), null, maxElements: 1000));
        Assert.Equal(ErrorKind.TooLarge, e.Kind);
        Assert.Contains("inputs[0]", e.Message, StringComparison.Ordinal);
        Assert.Contains("the limit is 1000", e.Message, StringComparison.Ordinal);
        Assert.Contains("MaxTensorElements", e.Message, StringComparison.Ordinal);

        // The limit is per request: two inputs of 600 elements each cross 1000 together.
        var data = string.Join(',', Enumerable.Repeat("0", 600));
        var two = Assert.Throws<MedServeException>(() => V2Codec.ParseRequest(Encoding.UTF8.GetBytes(
            $$"""{"inputs":[{"name":"a","datatype":"UINT8","shape":[600],"data":[{{data}}]},{"name":"b","datatype":"UINT8","shape":[600],"data":[{{data}}]}]}"""), null, maxElements: 1000));
        Assert.Equal(ErrorKind.TooLarge, two.Kind);
        Assert.Contains("inputs[1]", two.Message, StringComparison.Ordinal);
        Assert.Contains("600 already in earlier inputs", two.Message, StringComparison.Ordinal);
    }
}
