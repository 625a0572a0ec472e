using System.Buffers;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Protocol;

namespace MedServe.Tests.Unit;

public sealed class V2CodecTests
{
    private static InferenceRequest Parse(string json) => V2Codec.ParseRequest(Encoding.UTF8.GetBytes(json), null).Request;

    [Theory]
    [InlineData("""{"id":"\ud800","inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]}""")]
    [InlineData("""{"inputs":[{"name":"\udc00x","datatype":"FP32","shape":[1],"data":[1]}]}""")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":["\ud800"]}]}""")]
    public void A_lone_surrogate_escape_in_a_string_is_a_400_not_a_500(string body)
    {
        var e = Assert.Throws<MedServeException>(() => V2Codec.ParseRequest(System.Text.Encoding.UTF8.GetBytes(body), null));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
    }

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

    [Theory]
    [InlineData("FP32")]
    [InlineData("FP64")]
    [InlineData("FP16")]
    [InlineData("INT64")]
    [InlineData("UINT8")]
    [InlineData("BOOL")]
    public void Data_before_its_datatype_and_shape_gives_the_same_tensor(string datatype)
    {
        var data = datatype == "BOOL" ? "[[true,false],[false,true]]" : "[[1,2],[3,4]]";
        var usual = Parse($$"""{"inputs":[{"name":"x","datatype":"{{datatype}}","shape":[2,2],"data":{{data}}}]}""").Inputs[0];
        var late = Parse($$"""{"inputs":[{"data":{{data}},"shape":[2,2],"name":"x","datatype":"{{datatype}}"}]}""").Inputs[0];
        Assert.Equal(usual.Data, late.Data);
        Assert.Equal(usual.Shape, late.Shape);
        Assert.Equal(TensorTypes.TryParse(datatype, out var dt) ? dt : default, late.Datatype);
    }

    [Theory]
    [InlineData("0.1")]
    [InlineData("-0.53456783")]
    [InlineData("123456789012345")]
    [InlineData("1234567890123456789")]
    [InlineData("1e22")]
    [InlineData("1e23")]
    [InlineData("1.5E-7")]
    [InlineData("0.000000000000000000000001234")]
    [InlineData("9007199254740993")]
    [InlineData("2.2250738585072014e-308")]
    [InlineData("5e-324")]
    [InlineData("-0")]
    public void Numbers_are_the_correctly_rounded_double_then_narrowed(string number)
    {
        var expected = double.Parse(number, System.Globalization.CultureInfo.InvariantCulture);
        var fp64 = Parse($$"""{"inputs":[{"name":"x","datatype":"FP64","shape":[1],"data":[{{number}}]}]}""").Inputs[0];
        Assert.Equal(BitConverter.DoubleToInt64Bits(expected), BitConverter.DoubleToInt64Bits(fp64.AsSpan<double>()[0]));
        var fp32 = Parse($$"""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[{{number}}]}]}""").Inputs[0];
        Assert.Equal(BitConverter.SingleToInt32Bits((float)expected), BitConverter.SingleToInt32Bits(fp32.AsSpan<float>()[0]));
    }

    [Theory]
    // The first error in the documented order wins, wherever the fields stand; invalid JSON anywhere wins over all.
    [InlineData("""{"inputs":[{"name":"x"}],"id":5}""", "'id' must be a string")]
    [InlineData("""{"outputs":7,"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]}""", "'outputs' must be an array")]
    [InlineData("""{"inputs":[{"data":["x"],"shape":[-1],"datatype":"FP32"}]}""", "needs a string 'name'")]
    [InlineData("""{"inputs":[{"data":["x"],"name":"x","shape":[-1],"datatype":"FP32"}]}""", "shape dimension 0 must be a positive integer")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":["x"],"parameters":{"binary_data_size":4}}]}""", "binary data is truncated")]
    [InlineData("""{"id":5,"inputs":[{"name":"x"}],"parameters":{"timeout":0},"x":[1,}""", "not valid JSON (line 1, byte 67)")]
    public void Errors_come_in_the_documented_order_whatever_the_order_of_the_fields(string json, string expected)
    {
        var e = Assert.Throws<MedServeException>(() => Parse(json));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_field_given_again_counts_with_its_last_value()
    {
        var request = Parse("""{"inputs":[{"name":"a","datatype":"FP32","shape":[9],"data":[1],"shape":[1],"data":[2]}],"inputs":[{"name":"b","datatype":"INT32","shape":[1],"data":[3],"datatype":"INT64"}]}""");
        var input = Assert.Single(request.Inputs);
        Assert.Equal(("b", TensorDatatype.INT64), (input.Name, input.Datatype));
        Assert.Equal([3L], input.AsSpan<long>().ToArray());
    }

    [Fact]
    public void Shapes_that_data_never_fills_cost_no_buffer_each()
    {
        // Each input claims 10,000 FP64 elements, sends one, then shrinks its shape to fit: a buffer allocated for every
        // claim would be 80 kB per 60 bytes of text. One may be wasted; the rest read their data once the input has ended.
        var claims = string.Join(',', Enumerable.Repeat("""{"name":"a","datatype":"FP64","shape":[10000],"data":[1],"shape":[1]}""", 200));
        var body = Encoding.UTF8.GetBytes($$"""{"inputs":[{{claims}}]}""");
        V2Codec.ParseRequest(body, null);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var request = V2Codec.ParseRequest(body, null).Request;
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(200, request.Inputs.Length);
        Assert.True(allocated < 1_000_000, $"{allocated} bytes allocated for a {body.Length}-byte body");
    }
}
