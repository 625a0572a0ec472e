namespace MedServe.Tests.Unit;

public sealed class LatencyBucketsTests
{
    [Theory]
    [InlineData(0.5, 2.0)]    // rank 4 of 8: the top of the (1, 2] bucket
    [InlineData(0.25, 1.5)]   // rank 2: half way through (1, 2]
    [InlineData(0.75, 3.0)]   // rank 6: half way through (2, 4]
    [InlineData(1.0, 4.0)]
    public void Quantiles_interpolate_inside_their_bucket(double q, double expected)
    {
        double[] bounds = [1, 2, 4];
        long[] counts = [0, 4, 4, 0];
        Assert.Equal(expected, LatencyBuckets.Quantile(bounds, counts, q)!.Value, 12);
    }

    [Fact]
    public void The_first_bucket_starts_at_zero_and_the_overflow_bucket_answers_its_lower_bound()
    {
        var first = new long[LatencyBuckets.Seconds.Length + 1];
        first[0] = 4;
        Assert.Equal(0.000025, LatencyBuckets.Quantile(LatencyBuckets.Seconds, first, 0.5)!.Value, 12);

        var overflow = new long[LatencyBuckets.Seconds.Length + 1];
        overflow[^1] = 3;
        Assert.Equal(10, LatencyBuckets.Quantile(LatencyBuckets.Seconds, overflow, 0.99));
    }

    [Fact]
    public void Sub_millisecond_buckets_give_sub_millisecond_percentiles()
    {
        var counts = new long[LatencyBuckets.Seconds.Length + 1];
        counts[LatencyBuckets.IndexOf(LatencyBuckets.Seconds, 0.0007)] = 10; // (0.0005, 0.001]
        counts[LatencyBuckets.IndexOf(LatencyBuckets.Seconds, 0.002)] = 10;  // (0.001, 0.0025]
        Assert.Equal(0.001, LatencyBuckets.Quantile(LatencyBuckets.Seconds, counts, 0.5)!.Value, 12);
        Assert.Equal(0.00175, LatencyBuckets.Quantile(LatencyBuckets.Seconds, counts, 0.75)!.Value, 12);
    }

    [Fact]
    public void No_observations_have_no_quantile()
    {
        Assert.Null(LatencyBuckets.Quantile(LatencyBuckets.Seconds, [], 0.5));
        Assert.Null(LatencyBuckets.Quantile(LatencyBuckets.Seconds, new long[LatencyBuckets.Seconds.Length + 1], 0.5));
    }

    [Fact]
    public void A_value_on_a_boundary_belongs_to_that_bucket_and_large_ones_overflow()
    {
        Assert.Equal(4, LatencyBuckets.IndexOf(LatencyBuckets.Seconds, 0.001));
        Assert.Equal(5, LatencyBuckets.IndexOf(LatencyBuckets.Seconds, 0.0011));
        Assert.Equal(0, LatencyBuckets.IndexOf(LatencyBuckets.Seconds, 0));
        Assert.Equal(LatencyBuckets.Seconds.Length, LatencyBuckets.IndexOf(LatencyBuckets.Seconds, 100));
        Assert.Equal(3, LatencyBuckets.IndexOf(LatencyBuckets.Rows, 8));
        Assert.Equal(4, LatencyBuckets.IndexOf(LatencyBuckets.Rows, 9));
    }

    [Fact]
    public void Add_sums_bucket_by_bucket_and_grows_a_shorter_target()
    {
        Assert.Equal([2L, 3, 1], LatencyBuckets.Add([1, 2], [1, 1, 1]));
        Assert.Equal([5L, 5], LatencyBuckets.Add([4, 3], [1, 2]));
    }
}
